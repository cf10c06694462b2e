"""Known answers for the redaction of passwords in URLs, in every form a storage URL takes."""

import pytest

from trpo_exp.redact import redact_secrets, split_url_password, with_url_password

PW = "s3cr@t/pw"  # a raw "@" and "/" inside: the host starts after the last "@"


@pytest.mark.parametrize(("url", "bare", "password"), [
    ("postgresql://trpo:pw@127.0.0.1:5432/db", "postgresql://trpo@127.0.0.1:5432/db", "pw"),
    (f"postgresql://trpo:{PW}@127.0.0.1/db", "postgresql://trpo@127.0.0.1/db", PW),
    ("postgresql+psycopg2://trpo:p%40ss@h/db", "postgresql+psycopg2://trpo@h/db", "p%40ss"),
    ("postgresql://trpo@h/db?password=pw", "postgresql://trpo@h/db", "pw"),
    ("postgresql://trpo@h/db?password=pw&sslmode=disable", "postgresql://trpo@h/db?sslmode=disable", "pw"),
    ("postgresql://trpo@h/db?sslmode=disable&password=pw", "postgresql://trpo@h/db?sslmode=disable", "pw"),
    ("sqlite:///sweep.db", "sqlite:///sweep.db", None),
])
def test_a_password_is_split_off_in_every_url_form(url, bare, password):
    assert split_url_password(url) == (bare, password)


@pytest.mark.parametrize("text", [
    f"sweep.storage=postgresql://trpo:{PW}@127.0.0.1/db",
    "error: could not connect to 'postgresql://trpo@h/db?password=s3cr@t/pw'",
    "postgresql://trpo@h/db?sslmode=disable&PASSWORD=s3cr@t/pw other words",
])
def test_redaction_leaves_no_part_of_the_password(text):
    redacted = redact_secrets(text)
    assert "s3cr" not in redacted and "t/pw" not in redacted and "***" in redacted, redacted


def test_the_password_goes_back_into_the_userinfo():
    bare, password = split_url_password(f"postgresql://trpo:{PW}@127.0.0.1/db")
    assert with_url_password(bare, password) == f"postgresql://trpo:{PW}@127.0.0.1/db"
    assert with_url_password("sqlite:///x.db", "pw") == "sqlite:///x.db"
