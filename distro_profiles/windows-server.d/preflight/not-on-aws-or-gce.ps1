# AWS and Google Cloud generalize Windows with their own tools, which write the answer file
# their first boot needs (administrator password, host name) and reset their agents
# (windows.md §1.1: EC2Launch v2 `ec2launch sysprep`, EC2Launch v1 SysprepInstance.ps1,
# EC2Config `ec2config.exe -sysprep`, Google's GCESysprep, which also points Setup's
# CmdLine at its specialize wrapper). A bare Sysprep there gives an image whose instances
# stop at OOBE or miss the cloud's specialize step, and nobody can reach them. Refused,
# naming the cloud's tool; `--skip not-on-aws-or-gce` runs anyway (an own answer file).
$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
$anyway = ', which writes the answer file its instances need; --skip not-on-aws-or-gce runs a bare Sysprep anyway'
$tool = Join-Path $env:ProgramFiles 'Amazon\EC2Launch\ec2launch.exe'
if (Test-Path -LiteralPath $tool) {
  [Console]::Error.WriteLine('this is an AWS EC2 instance (EC2Launch v2, ' + $tool + '): generalize it with "ec2launch.exe sysprep"' + $anyway)
  exit 1
}
$tool = Join-Path $env:ProgramData 'Amazon\EC2-Windows\Launch\Scripts\SysprepInstance.ps1'
if (Test-Path -LiteralPath $tool) {
  [Console]::Error.WriteLine('this is an AWS EC2 instance (EC2Launch v1, ' + $tool + '): generalize it with SysprepInstance.ps1' + $anyway)
  exit 1
}
$tool = Join-Path $env:ProgramFiles 'Amazon\Ec2ConfigService\ec2config.exe'
if (Test-Path -LiteralPath $tool) {
  [Console]::Error.WriteLine('this is an AWS EC2 instance (EC2Config, ' + $tool + '): generalize it with "ec2config.exe -sysprep"' + $anyway)
  exit 1
}
$tool = Join-Path $env:ProgramFiles 'Google\Compute Engine\sysprep\gcesysprep.bat'
if (Test-Path -LiteralPath $tool) {
  [Console]::Error.WriteLine('this is a Google Compute Engine VM (' + $tool + '): generalize it with GCESysprep' + $anyway)
  exit 1
}
Write-Output 'no AWS or Google Cloud generalization tool found'
