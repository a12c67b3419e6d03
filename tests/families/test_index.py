"""The families' index (``prunepilot.families.FAMILIES``) matches the code: each family's module,
its settings (declared in ``FamilyFields``, each in one family) and the places it plugs in."""

from __future__ import annotations

import importlib

import pytest

from prunepilot.families import FAMILIES, PLACES
from prunepilot.families.settings import FamilyFields
from prunepilot.settings import settings_of


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_each_family_names_its_module_its_settings_and_known_places(family):
    importlib.import_module(family.module)
    declared = {s.name for s in settings_of(FamilyFields)}
    assert set(family.settings) <= declared
    assert family.places and set(family.places) <= set(PLACES)


def test_every_family_setting_belongs_to_exactly_one_family():
    named = [name for family in FAMILIES for name in family.settings]
    assert sorted(named) == sorted(s.name for s in settings_of(FamilyFields))
