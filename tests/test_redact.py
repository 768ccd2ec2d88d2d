"""Secrets never reach error messages: the redaction helper and the core's image/message errors."""

from __future__ import annotations

import base64
import doctest

import pytest

from ras_guard import _redact
from ras_guard._redact import redact, redact_url
from ras_guard.errors import InvalidMessageError
from ras_guard.images import load_image
from ras_guard.messages import normalize_messages

SIGNED = (
    "https://bob:s3cr3t-pw@bucket.s3.amazonaws.com/cat.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261202&X-Amz-Signature=aa11bb22cc33dd44ee55ff66aa77bb88cc99dd00"
)
PAYLOAD = base64.b64encode(bytes(range(256))).decode()


def _clean(text: str) -> None:
    for secret in ("s3cr3t-pw", "AKIAIOSFODNN7EXAMPLE", "aa11bb22cc33dd44"):
        assert secret not in text, text
    for i in range(0, len(PAYLOAD) - 12, 4):
        assert PAYLOAD[i : i + 12] not in text, text


def test_doctests() -> None:
    assert doctest.testmod(_redact).failed == 0


def test_redact_masks_credentials_queries_data_uris_and_base64() -> None:
    out = redact(f"failed on {SIGNED!r} and data:image/png;base64,{PAYLOAD} and raw {PAYLOAD}")
    _clean(out)
    assert "https://***@bucket.s3.amazonaws.com/cat.png?X-Amz-Algorithm=***" in out
    assert f"data:image/png;base64,[{len(PAYLOAD)} chars]" in out
    assert redact_url(SIGNED).startswith("https://***@bucket.s3.amazonaws.com/cat.png?")
    assert redact_url("data:image/png;base64" + PAYLOAD) == f"data:[{len(PAYLOAD) + 16} chars]"


def test_redact_keeps_what_is_not_secret() -> None:
    digest = "becaea674f454e978f7924fb0704c5cc9108ff071a77d4e4b821400730ca1898"
    text = f"lm_head_sha256 {digest} vs file '/home/user/images/some_folder/cat_2024.png' (calibration_id)"
    assert redact(text) == text
    assert redact("http://example.com/a.png") == "http://example.com/a.png"


@pytest.mark.parametrize(
    "source", [SIGNED, f"data:image/png;base64,{PAYLOAD}", f"http://user:s3cr3t-pw@host/x?sig={PAYLOAD}"]
)
def test_core_url_errors_are_redacted(source: str) -> None:
    with pytest.raises(InvalidMessageError, match="takes no URLs") as info:
        load_image(source)
    _clean(str(info.value))


def test_missing_file_error_is_redacted() -> None:
    with pytest.raises(InvalidMessageError, match="does not exist") as info:
        load_image("s3://AKIAIOSFODNN7EXAMPLE:s3cr3t-pw@bucket/cat.png")
    _clean(str(info.value))


def test_malformed_part_error_is_redacted() -> None:
    with pytest.raises(InvalidMessageError) as info:
        normalize_messages([{"role": "user", "content": [{"image_url": SIGNED}]}])
    _clean(str(info.value))
