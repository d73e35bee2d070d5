# A process this WinRS shell starts lives in the shell's job object and dies with
# it: Ctrl-C, SIGTERM, a lost connection or WinRM's IdleTimeout would kill Sysprep
# mid-generalize and ruin the VM (windows.md §3.6). Win32_Process.Create starts it
# from the WMI service instead, outside that job, as the same (administrator) user,
# not SYSTEM; Ansible's async_wrapper escapes the job the same way. This command
# only watches: its end, for whatever reason, leaves Sysprep running.
# /quiet makes a failing Sysprep exit instead of waiting on a dialog; /quit keeps
# the VM running for verification. Success is decided from ImageState and the tag
# file once sysprep.exe exited: its exit code is unreliable (windows.md §1.1).
$ErrorActionPreference = 'Stop'
$sysprepDir = Join-Path $env:SystemRoot 'System32\Sysprep'
$arguments = '/generalize /oobe /quit /quiet'
if ({{ vars.sysprep_mode_vm }} -eq 'true') { $arguments += ' /mode:vm' }
$unattend = {{ vars.sysprep_unattend }}
if ({{ vars.oobe_answer_file }} -eq 'true') { $unattend = Join-Path $sysprepDir 'imageprep-oobe.xml' }
if ($unattend) { $arguments += ' /unattend:"' + $unattend + '"' }
$pollSeconds = [int]{{ vars.sysprep_poll_seconds }}
$deadline = [int]{{ vars.sysprep_deadline_seconds }}
$killOnDeadline = {{ vars.sysprep_kill_on_deadline }} -eq 'true'
$stateKey = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State'
$tag = Join-Path $sysprepDir 'Sysprep_succeeded.tag'
$commandLine = '"' + (Join-Path $sysprepDir 'sysprep.exe') + '" ' + $arguments
Write-Output ('starting: ' + $commandLine)
$created = Invoke-CimMethod -ClassName Win32_Process -MethodName Create -Arguments @{ CommandLine = $commandLine; CurrentDirectory = $sysprepDir }
if ($created.ReturnValue -ne 0) {
  [Console]::Error.WriteLine('Win32_Process.Create could not start sysprep.exe (return value ' + $created.ReturnValue + '): Sysprep changed nothing, but the cleanup phase has run')
  exit 1
}
$sysprepId = $created.ProcessId
# imageprep journals this line: a resumed run knows which process it waits for.
Write-Output ('imageprep-journal: sysprep_pid=' + $sysprepId)
$clock = [Diagnostics.Stopwatch]::StartNew()
$seen = ''
while (@(Get-Process -Id $sysprepId -ErrorAction SilentlyContinue | Where-Object { $_.ProcessName -eq 'sysprep' }).Count -gt 0) {
  $state = (Get-ItemProperty -LiteralPath $stateKey -Name ImageState).ImageState
  if ($state -ne $seen) { Write-Output ('ImageState: ' + $state); $seen = $state }
  if ($clock.Elapsed.TotalSeconds -gt $deadline) {
    if ($killOnDeadline) {
      Stop-Process -Id $sysprepId -Force
      [Console]::Error.WriteLine('Sysprep did not finish within ' + $deadline + ' s (ImageState ' + $state + ') and was stopped (sysprep_kill_on_deadline): the VM is half generalized, restore it from the backup')
    } else {
      [Console]::Error.WriteLine('Sysprep did not finish within ' + $deadline + ' s (ImageState ' + $state + '); imageprep stopped waiting and left it running (process ' + $sysprepId + '): check the VM later with `imageprep run --resume`, or restore it from the backup')
    }
    exit 1
  }
  Start-Sleep -Seconds $pollSeconds
}
$state = (Get-ItemProperty -LiteralPath $stateKey -Name ImageState).ImageState
$tagged = Test-Path -LiteralPath $tag
Write-Output ('sysprep.exe (process ' + $sysprepId + ') exited after ' + [math]::Round($clock.Elapsed.TotalSeconds) + ' s; ImageState ' + $state + '; Sysprep_succeeded.tag: ' + $tagged)
if ($state -eq 'IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE' -and $tagged) { exit 0 }
$errorLog = Join-Path $sysprepDir 'Panther\setuperr.log'
$errors = @(Get-Content -LiteralPath $errorLog -ErrorAction SilentlyContinue | Where-Object { $_ -match '\bError\b' })
foreach ($line in $errors) { [Console]::Error.WriteLine($line) }
[Console]::Error.WriteLine('Sysprep failed (ImageState ' + $state + ' after sysprep.exe exited); setuperr.log: ' + (@($errors | Select-Object -First 1) -join ''))
exit 1
