"""Wiring: the command line (cli.py, the one module the entry points import) and what it shares with
report.py and similar.py (args.py, console.py), Beam's options (options.py), the graph of a run
(graph.py), a run's life (run.py, temp_files.py, progress.py) and its profiles (config.py)."""
