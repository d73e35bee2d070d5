$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
# Azure writes its own answer file at provisioning ("Generalize a VM", MS Learn); a
# custom /unattend would fight it. The guest agent's services mark an Azure VM.
$names = @({{ vars.azure_agent_services }})
$installed = @()
if ($names.Count -gt 0) { $installed = @(Get-Service -Name $names -ErrorAction SilentlyContinue) }
if ($installed.Count -gt 0) {
  [Console]::Error.WriteLine('the Azure guest agent is installed (' + ($installed.Name -join ', ') + '), and Azure supplies its own answer file: leave sysprep_unattend empty and oobe_answer_file false for an Azure image')
  exit 1
}
Write-Output 'no Azure guest agent: the custom answer file is used'
