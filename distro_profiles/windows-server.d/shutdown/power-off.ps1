# shutdown.exe /s (power off) /t 0 (now) /f (do not wait for applications): the
# documented way to power off; Stop-Computer hides the exit code. After it,
# imageprep watches the WinRM listener for power_off_watch_seconds: a VM that
# answers again rebooted, ran specialize, and is reported as spoiled (exit 6).
shutdown.exe /s /t 0 /f
if ($LASTEXITCODE -ne 0) {
  [Console]::Error.WriteLine('shutdown.exe /s /t 0 /f failed with exit code ' + $LASTEXITCODE + ' (1190: a shutdown is already scheduled; cancel it with shutdown.exe /a and run again)')
  exit 1
}
Write-Output 'shutdown.exe /s /t 0 /f: powering off now'
