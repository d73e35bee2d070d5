# shutdown.exe /s (power off) /t 0 (now) /f (do not wait for applications): the
# documented way to power off; Stop-Computer hides the exit code. After it,
# imageprep watches the WinRM listener for power_off_watch_seconds: a VM that
# answers again rebooted, ran specialize, and is reported as spoiled (exit 6).
# 1190 (ERROR_SHUTDOWN_IS_SCHEDULED): someone scheduled a shutdown or restart earlier
# (a delayed restart, an installer). A restart would boot the generalized VM into
# specialize, so it is cancelled and the power-off asked for again, once (Ansible's
# win_reboot does the same; windows.md §2 and §3).
# 1115 (ERROR_SHUTDOWN_IN_PROGRESS): the VM is already going down (Packer accepts it
# too); whether it powers off or restarts, the listener watch that follows tells.
shutdown.exe /s /t 0 /f
$code = $LASTEXITCODE
if ($code -eq 1190) {
  Write-Output 'a shutdown or restart was already scheduled (1190): cancelling it with shutdown.exe /a'
  shutdown.exe /a
  shutdown.exe /s /t 0 /f
  $code = $LASTEXITCODE
}
if ($code -eq 1115) {
  Write-Output 'a shutdown is already in progress (1115): watching that the VM stays off'
  exit 0
}
if ($code -ne 0) {
  [Console]::Error.WriteLine('shutdown.exe /s /t 0 /f failed with exit code ' + $code)
  exit 1
}
Write-Output 'shutdown.exe /s /t 0 /f: powering off now'
