"""Target URLs: parsing and the refusals that keep secrets out of argv."""

import pytest

from agent.errors import UsageError
from agent.targets import parse_target


def test_ssh_url_defaults_to_port_22() -> None:
    """An ssh URL without a port connects to 22."""
    target = parse_target("ssh://azureuser@golden-vm.example.com")
    assert (target.scheme, target.user, target.host, target.port) == (
        "ssh",
        "azureuser",
        "golden-vm.example.com",
        22,
    )


def test_explicit_port_is_kept() -> None:
    """A port in the URL wins over the scheme's default."""
    assert parse_target("ssh://root@10.0.0.5:2222").port == 2222


def test_winrm_https_defaults_to_5986() -> None:
    """winrm+https defaults to the HTTPS listener port."""
    assert parse_target("winrm+https://Administrator@win").port == 5986


def test_password_in_url_is_refused_without_echoing_it() -> None:
    """A password in the URL is refused and the error does not repeat it."""
    with pytest.raises(UsageError) as caught:
        parse_target("ssh://azureuser:hunter2@vm")
    assert "hunter2" not in str(caught.value)
    assert "--password-env" in str(caught.value)


def test_missing_user_is_named() -> None:
    """A URL without a user says what shape was expected."""
    with pytest.raises(UsageError, match="no user"):
        parse_target("ssh://vm.example.com")


def test_unknown_scheme_lists_known_ones() -> None:
    """An unknown scheme lists the supported ones."""
    with pytest.raises(UsageError, match="ssh://"):
        parse_target("telnet://root@vm")


def test_display_has_no_secret_and_brackets_ipv6() -> None:
    """The display form is safe to log and valid for IPv6 hosts."""
    assert parse_target("ssh://u@[::1]:2200").display == "ssh://u@[::1]:2200"
