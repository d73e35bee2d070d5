$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
# A successful Sysprep writes error lines too (BCD: BiUpdateEfiEntry failed
# c000000d on UEFI/Gen2 VMs, SPPNP 0x57, device uninstall 0xE0000231): only a
# failed action (SYSPRP ActionPlatform "Failure occurred while executing ...") or
# a provider's fatal error means Sysprep failed. The rest is shown, not judged.
$errorLog = Join-Path $env:SystemRoot 'System32\Sysprep\Panther\setuperr.log'
$lines = @()
if (Test-Path -LiteralPath $errorLog) { $lines = @(Get-Content -LiteralPath $errorLog) }
$fatal = @($lines | Where-Object { $_ -match 'Failure occurred while executing|\bFatal\b' })
$other = @($lines | Where-Object { $_ -match '\bError\b' -and $_ -notmatch 'Failure occurred while executing|\bFatal\b' })
foreach ($line in $other) { Write-Output ('setuperr.log, not a failure: ' + $line) }
if ($fatal.Count -gt 0) {
  foreach ($line in $fatal) { [Console]::Error.WriteLine($line) }
  [Console]::Error.WriteLine('setuperr.log says Sysprep failed (' + $fatal.Count + ' line(s)), the first: ' + (@($fatal | Select-Object -First 1) -join ''))
  exit 1
}
Write-Output ('setuperr.log has no failure line (' + $other.Count + ' other error line(s) shown above)')
