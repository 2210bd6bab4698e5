"""musicnn-beam, installed under its own name so that nothing it installs can clash with another
package: `musicnn_beam.pipeline` is the repo's pipeline/, `musicnn_beam.transforms` its transforms/,
and so on for store/, reports/, models/ and demo/ (pyproject.toml's package-dir)."""
