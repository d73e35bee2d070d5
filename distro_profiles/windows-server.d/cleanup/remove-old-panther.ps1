# Azure's "Generalize a VM" document has this folder deleted before Sysprep; its
# logs of the installation and of earlier specialize/OOBE passes would otherwise
# mix with the new VM's. imageprep copied it to <run>/panther-before-sysprep
# before this phase.
$panther = Join-Path $env:SystemRoot 'Panther'
$keep = {{ vars.sysprep_unattend }}
if ($keep -and $keep -like ($panther + '\*')) {
  Write-Output ('kept ' + $panther + ': it holds the answer file in sysprep_unattend')
  exit 0
}
if (Test-Path -LiteralPath $panther) { Remove-Item -LiteralPath $panther -Recurse -Force; Write-Output ('removed ' + $panther) } else { Write-Output ('no ' + $panther) }
