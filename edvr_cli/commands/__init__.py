"""One module per `edvr` subcommand; each exposes a Click command named `command`."""
