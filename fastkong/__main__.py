from fastkong.cli import main

main()
