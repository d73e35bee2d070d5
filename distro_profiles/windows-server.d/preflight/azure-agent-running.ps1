$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
$names = @({{ vars.azure_agent_services }})
if ($names.Count -eq 0) { Write-Output 'no Azure guest agent services to check'; exit 0 }
$installed = @(Get-Service -Name $names -ErrorAction SilentlyContinue)
if ($installed.Count -eq 0) { Write-Output 'no Azure guest agent service is installed (not an Azure VM)'; exit 0 }
$stopped = @($installed | Where-Object { $_.Status -ne 'Running' })
if ($stopped.Count -gt 0) {
  [Console]::Error.WriteLine('Azure guest agent services not running: ' + (@($stopped | ForEach-Object { $_.Name + ' (' + $_.Status + ')' }) -join ', ') + '; start them or wait for provisioning to finish')
  exit 1
}
Write-Output ('Azure guest agent services running: ' + ($installed.Name -join ', '))
