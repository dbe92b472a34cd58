from myservice import main
main()
