$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
# Sysprep's AppX validation (0x80073cf2) fails on a package a user has (often a
# Store update of a built-in app) that is not provisioned in that version.
$provisioned = @(Get-AppxProvisionedPackage -Online | ForEach-Object { $_.DisplayName + '_' + $_.Version })
$offenders = @()
$fixes = @()
foreach ($package in @(Get-AppxPackage -AllUsers)) {
  if ($package.IsFramework -or $package.NonRemovable -or $package.SignatureKind -eq 'System') { continue }
  if ($provisioned -contains ($package.Name + '_' + $package.Version)) { continue }
  foreach ($user in @($package.PackageUserInformation)) {
    if ($user.InstallState -eq 'Installed') {
      $offenders += $package.PackageFullName + ' for ' + $user.UserSecurityId.Username + ' (' + $user.UserSecurityId.Sid + ')'
      $fixes += 'Remove-AppxPackage -Package ' + $package.PackageFullName + ' -User ' + $user.UserSecurityId.Sid + ' (' + $user.UserSecurityId.Username + ')'
    }
  }
}
if ($offenders.Count -gt 0) {
  foreach ($offender in $offenders) { [Console]::Error.WriteLine('installed for a user but not provisioned: ' + $offender) }
  # -User SID works on Server 2016 too, where Remove-AppxPackage has no -AllUsers.
  [Console]::Error.WriteLine('AppX packages installed for a user only would fail Sysprep (0x80073cf2); remove each or provision it: ' + ($fixes -join '; '))
  exit 1
}
Write-Output 'every AppX package installed for a user is provisioned for all users'
