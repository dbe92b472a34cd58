"""Functions the htmlreport sample calls on nodes (importable, stdlib only)."""


def say(text):
    print(text, flush=True)
    return text
