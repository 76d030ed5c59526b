"""conftest's ``require`` / ``missing``: what CI exists to check is skipped locally when missing, a failure under CI=true."""

from __future__ import annotations

import json

import pytest

from conftest import TEST_INSTALL, missing, require

NOWHERE = "comosvc_no_such_module"


@pytest.mark.parametrize("ci", [None, "", "false", "1"])
def test_a_missing_module_skips_outside_ci(ci, monkeypatch):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match=f"{NOWHERE} cannot be imported .*; install it: ") as skipped:
        require(NOWHERE)
    assert TEST_INSTALL in str(skipped.value)
    assert skipped.value.allow_module_level  # also at a test module's top, as test_onnx.py does


def test_a_missing_module_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"CI=true and {NOWHERE} cannot be imported") as failed:
        require(NOWHERE, install="pip install something")
    assert str(failed.value).endswith("install it: pip install something")
    assert not failed.value.pytrace  # the message alone, no traceback of the helper


def test_anything_else_missing_fails_under_ci_too(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no Chromium; install it: apt-get install chromium"):
        missing("no Chromium", install="apt-get install chromium")


def test_a_present_module_is_returned(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require("json") is json
