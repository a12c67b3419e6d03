"""Settings, each declared once: a dataclass field made by :func:`setting` holds a setting's type,
default, check, help, job-file key and flag. From the declarations come the command-line flags
(:mod:`~prunepilot.settings.flags`), the job-file keys and their checks
(:mod:`~prunepilot.settings.jobfile`), the job's validation (:func:`field_problems`), the JSON
Schema of job files (:mod:`~prunepilot.settings.schema`) and the settings reference and example
job file (:mod:`~prunepilot.settings.docs`, written by :mod:`prunepilot.write_docs`)."""

from prunepilot.settings.constraints import Check, Constraint, Integer, Items, Number, OneOf
from prunepilot.settings.declare import Setting, field_problems, setting, settings_of
from prunepilot.settings.surface import command_line, field_owner, invalid_field, named

__all__ = [
    "Check",
    "Constraint",
    "Integer",
    "Items",
    "Number",
    "OneOf",
    "Setting",
    "command_line",
    "field_owner",
    "field_problems",
    "invalid_field",
    "named",
    "setting",
    "settings_of",
]
