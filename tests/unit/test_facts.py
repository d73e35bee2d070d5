"""Facts parsing: the text the gather script prints becomes typed facts."""

from agent.facts import extract_version, facts_from_values, parse_key_values

GATHERED = """\
os_ID=ubuntu
os_ID_LIKE=debian
os_VERSION_ID=22.04
os_VERSION_CODENAME=jammy
os_PRETTY_NAME=Ubuntu 22.04.4 LTS
kernel=5.15.0-1057-azure
arch=x86_64
hostname=golden
user=azureuser
uid=1000
has_waagent=1
has_cloud-init=1
has_sudo=1
has_systemctl=1
systemd_booted=1
cloud_init_version=/usr/bin/cloud-init 23.4.4-0ubuntu0~22.04.1
waagent_version=WALinuxAgent-2.2.46 running on ubuntu 22.04
resolv_conf_symlink=1
"""


def test_os_release_fields_are_parsed() -> None:
    """ID, ID_LIKE and VERSION_ID come through for profile matching."""
    facts = facts_from_values(parse_key_values(GATHERED), "azureuser")
    assert facts.os_release == {"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "22.04"}


def test_tool_versions_are_extracted() -> None:
    """cloud-init and waagent versions are reduced to their dotted numbers."""
    facts = facts_from_values(parse_key_values(GATHERED), None)
    assert (facts.cloud_init_version, facts.waagent_version) == ("23.4.4", "2.2.46")


def test_systemd_needs_to_be_booted_not_just_installed() -> None:
    """systemctl present without /run/systemd/system is not a systemd system."""
    values = parse_key_values(GATHERED)
    values["systemd_booted"] = "0"
    assert facts_from_values(values, None).tools["systemd"] is False


def test_non_root_login_is_not_root() -> None:
    """uid 1000 is not root; expressions see is_root false."""
    facts = facts_from_values(parse_key_values(GATHERED), None)
    assert facts.as_dict()["is_root"] is False


def test_missing_ovf_user_is_none() -> None:
    """An empty ovf-env UserName becomes None, not an empty string."""
    assert facts_from_values(parse_key_values(GATHERED), "").ovf_user is None


def test_extract_version_of_garbage_is_none() -> None:
    """A version string without digits yields None."""
    assert extract_version("command not found") is None
