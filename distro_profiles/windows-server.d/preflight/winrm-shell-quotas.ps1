$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
# WinRM deletes a shell, and kills what runs in it, when its processes pass
# MaxMemoryPerShellMB or MaxProcessesPerShell or it idles past IdleTimeout (ms).
# Sysprep runs outside the shell, but every step and the wait for Sysprep run in it.
$shell = 'WSMan:\localhost\Shell'
$memory = [long](Get-Item -LiteralPath (Join-Path $shell 'MaxMemoryPerShellMB')).Value
$processes = [long](Get-Item -LiteralPath (Join-Path $shell 'MaxProcessesPerShell')).Value
$idleMs = [long](Get-Item -LiteralPath (Join-Path $shell 'IdleTimeout')).Value
$problems = @()
if ($memory -lt [long]{{ vars.min_shell_memory_mb }}) { $problems += 'MaxMemoryPerShellMB is ' + $memory + ', below ' + {{ vars.min_shell_memory_mb }} + ': run Set-Item -Path WSMan:\localhost\Shell\MaxMemoryPerShellMB -Value 2048' }
if ($processes -lt [long]{{ vars.min_shell_processes }}) { $problems += 'MaxProcessesPerShell is ' + $processes + ', below ' + {{ vars.min_shell_processes }} + ': run Set-Item -Path WSMan:\localhost\Shell\MaxProcessesPerShell -Value 25' }
if ($idleMs -lt [long]{{ vars.min_shell_idle_timeout_seconds }} * 1000) { $problems += 'IdleTimeout is ' + $idleMs + ' ms, below ' + {{ vars.min_shell_idle_timeout_seconds }} + ' s: run Set-Item -Path WSMan:\localhost\Shell\IdleTimeout -Value 7200000' }
if ($problems.Count -gt 0) {
  [Console]::Error.WriteLine('WinRM shell quotas would kill this run: ' + ($problems -join '; '))
  exit 1
}
Write-Output ('WinRM shell quotas: MaxMemoryPerShellMB ' + $memory + ', MaxProcessesPerShell ' + $processes + ', IdleTimeout ' + $idleMs + ' ms')
