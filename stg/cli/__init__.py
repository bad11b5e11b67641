"""`python -m stg`: CFG beside CFG + STG from the command line, for one prompt or a file of prompts.

arguments.py builds the parser from the settings table (stg/inputs.py), texts.py holds the help, run.py runs.
"""

from .run import main

__all__ = ["main"]
