"""A module that opens a socket when imported: a node template must refuse to fork it."""
import socket

connection = socket.socket()
