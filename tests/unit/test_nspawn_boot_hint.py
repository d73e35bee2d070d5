"""A target whose systemd dies of the host's inotify limit says which limit and what to run."""

from tests.targets.nspawn import boot_failure_hint

# The console of a target that failed in CI while 16 others were up (systemd 252, Debian 12).
_OUT_OF_INOTIFY = """\
Hostname set to <imageprep-golden>.
Failed to create control group inotify object: Too many open files
Failed to allocate manager object: Too many open files
[!!!!!!] Failed to allocate manager object.
Exiting PID 1...
"""


def test_out_of_inotify_instances_names_the_limit_and_the_fix() -> None:
    """The hint names fs.inotify.max_user_instances with its value and the script to run."""
    hint = boot_failure_hint(_OUT_OF_INOTIFY)
    assert "fs.inotify.max_user_instances = " in hint
    assert "tests/targets/host-limits.sh" in hint


def test_a_failed_path_unit_gets_the_hint() -> None:
    """A degraded boot whose failed unit is a path unit (an inotify watch) gets the hint too."""
    failed = "● systemd-ask-password-wall.path loaded failed failed Forward Password Requests\n"
    assert "tests/targets/host-limits.sh" in boot_failure_hint(failed)


def test_other_boot_failures_get_no_hint() -> None:
    """A console without the inotify error adds nothing to the message."""
    failed = "● ssh.service loaded failed failed OpenBSD Secure Shell server\n"
    assert boot_failure_hint(failed + "Failed to mount API filesystems.\n") == ""
