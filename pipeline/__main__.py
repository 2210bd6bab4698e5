from musicnn_beam.pipeline.cli import console_main

console_main()
