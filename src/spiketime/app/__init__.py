"""The application on top of the library: config schema and validation (:mod:`~spiketime.app.config`), the CLI
(:mod:`~spiketime.app.cli`, one module per command), run directories (:mod:`~spiketime.app.rundir`), the splits of
a data config (:mod:`~spiketime.app.splits`), models and optimisers from a config
(:mod:`~spiketime.app.factories`), checkpoints (:mod:`~spiketime.app.checkpoints`), the fit loop with resume
(:mod:`~spiketime.app.fit`), reports, sweeps and the benchmark. The library never imports it."""
