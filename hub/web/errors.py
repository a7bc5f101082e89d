"""A service's HubError on a page: its message translated, under the field it names."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Request

from hub.core.errors import HubError, describe
from hub.web.i18n import language_of, translator


def field_errors(
    request: Request, error: HubError, inputs: Mapping[str, str]
) -> tuple[dict[str, str], str | None]:
    """(`errors` for the template, keyed by the id of the input at fault; the page's problem).

    `inputs` maps the service's field names to the ids of this form's inputs. A field the form
    has no input for (the signer is the login, not a box on the page) shows at the top.
    """
    message = describe(error, translator(language_of(request)).gettext)
    if error.field is not None and error.field in inputs:
        return {inputs[error.field]: message}, None
    return {}, message
