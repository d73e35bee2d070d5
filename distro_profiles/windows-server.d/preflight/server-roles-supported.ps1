$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
# Microsoft's "Sysprep Support for Server Roles" (learn.microsoft.com/windows-hardware/
# manufacture/desktop/sysprep-support-for-server-roles) marks each role supported,
# not supported or not applicable; its newest column is Windows Server 2012, the
# best statement there is for later releases. A role it does not support may stop
# working after the image is deployed: configure it after deployment instead.
# Rows marked "No" there for Windows Server 2012, by Get-WindowsFeature name:
# AD CS, AD DS, AD FS, AD LDS, AD RMS, DHCP Server, Fax Server. WDS and WSUS are
# refused too (read from the English page's later rows, which the lookup for this
# profile could not re-read; unverified). Supported there: Application Server,
# File and Storage Services, Hyper-V (not its virtual networks); DNS: not applicable.
$unsupported = @('AD-Certificate', 'AD-Domain-Services', 'ADFS-Federation', 'ADLDS', 'ADRMS', 'DHCP', 'Fax', 'WDS', 'UpdateServices')
# --var gives the list as one comma-separated string: split it here.
$allowed = @(@({{ vars.allow_unsupported_roles }}) | ForEach-Object { $_.Split(',') } | Where-Object { $_ })
$installed = @(Get-WindowsFeature | Where-Object { $_.Installed } | ForEach-Object { $_.Name })
$refused = @($installed | Where-Object { $unsupported -contains $_ -and $allowed -notcontains $_ })
$waived = @($installed | Where-Object { $unsupported -contains $_ -and $allowed -contains $_ })
foreach ($role in $waived) { Write-Output ('warning: ' + $role + ' is not supported by Sysprep; allowed by allow_unsupported_roles') }
if ($refused.Count -gt 0) {
  [Console]::Error.WriteLine('installed server roles that Sysprep does not support ("Sysprep Support for Server Roles"): ' + ($refused -join ', ') + '; remove them and configure them after deployment, or accept the risk with --var allow_unsupported_roles=' + ($refused -join ','))
  exit 1
}
Write-Output ('no installed server role is unsupported by Sysprep (' + $installed.Count + ' roles and features installed)')
