"""The grammars the specs use, each as a Python check and as CEL for the API server.

The CRD's CEL rules and the operator's pydantic models must agree on what is
valid (``models.Rule`` pairs them); the pieces both need live here:

* durations (``workerfleet.durations``: '90s', '1h30m', '250ms', '1d', '2.5') in
  seconds. Kubernetes CEL's ``duration()`` speaks Go's grammar, which has no
  'd' and no bare numbers, so the CEL below computes the seconds itself;
* Kubernetes quantities ('500m', '1Gi', '2e3'), compared exactly (``Decimal``);
  CEL has ``quantity()``;
* Kubernetes names: qualified names (label keys, resource names) and label
  values; CEL has ``format.qualifiedName()`` and ``format.labelValue()``;
* container resource names: what the kubelet accepts (cpu, memory,
  ephemeral-storage, hugepages-<size>, or a domain-prefixed name).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from workerfleet.durations import UNIT_SECONDS

# -- durations -----------------------------------------------------------------------------------

_BARE_SECONDS_PATTERN = r"^[0-9]+(\\.[0-9]+)?$"
_DURATION_PART_PATTERN = r"[0-9]+(\\.[0-9]+)?(ms|s|m|h|d)"


def seconds_cel(field: str) -> str:
    """CEL for the seconds in the duration at ``field`` (a string matching DURATION_PATTERN).

    A bare number is seconds; otherwise each <number><unit> part is scaled and summed.
    'ms' is tested before 's' and 'm' (it ends in both).
    """
    scale = " : ".join(
        f"p.endsWith('{unit}') ? {seconds!r}"
        for unit, seconds in sorted(UNIT_SECONDS.items(), key=lambda item: -len(item[0]))
        if unit != "d"
    )
    number = "double(p.substring(0, p.size() - (p.endsWith('ms') ? 2 : 1)))"
    return (
        f"({field}.matches('{_BARE_SECONDS_PATTERN}') ? double({field}) : "
        f"{field}.findAll('{_DURATION_PART_PATTERN}')"
        f".map(p, {number} * ({scale} : {UNIT_SECONDS['d']!r})).sum())"
    )


# -- quantities ----------------------------------------------------------------------------------

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(value: int | str) -> Decimal | None:
    """The exact value of a Kubernetes quantity, or None when it is not one."""
    if isinstance(value, int):
        return Decimal(value)
    found = _QUANTITY.match(value)
    if found is None:
        return None
    try:
        number = Decimal(found["number"])
    except InvalidOperation:
        return None
    suffix = found["suffix"] or ""
    if suffix in _BINARY:
        return number * (Decimal(1024) ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    if suffix:
        return number.scaleb(int(suffix[1:]))
    return number


def quantity_cel(value: str) -> str:
    """CEL for the quantity of an int-or-string value."""
    return f"quantity(string({value}))"


def is_quantity_cel(value: str) -> str:
    return f"isQuantity(string({value}))"


# -- names ---------------------------------------------------------------------------------------

_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
NAME_PART_MAX_LENGTH = 63
PREFIX_MAX_LENGTH = 253
LABEL_VALUE_MAX_LENGTH = 63


def is_qualified_name(value: str) -> bool:
    """A label key or resource name: [prefix/]name (Kubernetes' IsQualifiedName)."""
    prefix, slash, name = value.rpartition("/")
    if slash and (
        not prefix or len(prefix) > PREFIX_MAX_LENGTH or not _DNS_SUBDOMAIN.match(prefix)
    ):
        return False
    return len(name) <= NAME_PART_MAX_LENGTH and _NAME_PART.match(name) is not None


def is_label_value(value: str) -> bool:
    return len(value) <= LABEL_VALUE_MAX_LENGTH and _LABEL_VALUE.match(value) is not None


def qualified_name_cel(value: str) -> str:
    return f"!format.qualifiedName().validate({value}).hasValue()"


def label_value_cel(value: str) -> str:
    return f"!format.labelValue().validate({value}).hasValue()"


# -- container resources -------------------------------------------------------------------------

STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")
HUGEPAGES_PREFIX = "hugepages-"
NATIVE_DOMAIN = "kubernetes.io/"


def is_resource_name(name: str) -> bool:
    """A resource a container may request: a standard one, hugepages-<size>, or prefixed."""
    if not is_qualified_name(name):
        return False
    return "/" in name or name in STANDARD_RESOURCES or name.startswith(HUGEPAGES_PREFIX)


def resource_name_cel(name: str) -> str:
    return (
        f"({qualified_name_cel(name)} && ({name}.contains('/') || "
        f"{name} in {list(STANDARD_RESOURCES)!r} || {name}.startsWith('{HUGEPAGES_PREFIX}')))"
    )


def is_extended_resource(name: str) -> bool:
    """A resource of another domain than kubernetes.io (a GPU, a device): whole units only."""
    return "/" in name and NATIVE_DOMAIN not in name


def is_overcommit_forbidden(name: str) -> bool:
    """Hugepages and extended resources: a request needs an equal limit (Kubernetes'
    IsOvercommitAllowed, negated)."""
    return is_extended_resource(name) or name.startswith(HUGEPAGES_PREFIX)


def extended_resource_cel(name: str) -> str:
    return f"({name}.contains('/') && !{name}.contains('{NATIVE_DOMAIN}'))"


def overcommit_forbidden_cel(name: str) -> str:
    return f"({extended_resource_cel(name)} || {name}.startsWith('{HUGEPAGES_PREFIX}'))"


def cel_string(text: str) -> str:
    """``text`` as a CEL string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
