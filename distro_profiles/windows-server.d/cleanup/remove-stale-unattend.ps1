# Setup reads these even without /unattend (windows.md §1.2); the answer file
# given in sysprep_unattend is kept.
$keep = {{ vars.sysprep_unattend }}
foreach ($path in @(
  (Join-Path $env:SystemRoot 'Panther\unattend.xml'),
  (Join-Path $env:SystemRoot 'System32\Sysprep\unattend.xml')
)) {
  if ($path -eq $keep) { Write-Output ('kept ' + $path + ': it is the answer file in sysprep_unattend'); continue }
  if (Test-Path -LiteralPath $path) { Remove-Item -LiteralPath $path -Force; Write-Output ('removed ' + $path) }
}
Write-Output 'no stale answer file is left'
