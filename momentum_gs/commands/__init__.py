"""The ``mgs`` sub-commands, one module each: ``add_arguments(parser)`` declares its command line and
``run(args)`` does it. :mod:`momentum_gs.cli` holds the table of them."""
