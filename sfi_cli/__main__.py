from sfi_cli.commands import main

main()
