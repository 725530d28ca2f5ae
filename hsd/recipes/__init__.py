"""One module per job, read top to bottom: validate, train, collate, compare, import-legacy.

A recipe is what a job runs, on any launcher (``hsd <command>``, torchrun, a submitit job):
it takes a typed :class:`hsd.config.Config` and paths, owns its run directory through
:class:`hsd.runs.RunDirectory`, and calls the components (data, prompts, models, inference,
training, metrics, reporting). Recipes sit below ``jobs/`` (which schedules them) and
``hsd.commands`` (which parses the command line and prints); components never import them.
"""
