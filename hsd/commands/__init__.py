"""Every ``hsd <command>``, one module each, read top to bottom like a recipe.

``hsd.cli`` parses the arguments and calls ``hsd.commands.<module>:main``. A command module
orchestrates components (data, prompts, models, inference, training, metrics, reporting) and
the run lifecycle (:mod:`hsd.runs`); components never import a command. The scheduler layer
(``jobs/``) runs commands as submitit jobs; ``submit``, ``status`` and ``cancel`` are its
commands.
"""
