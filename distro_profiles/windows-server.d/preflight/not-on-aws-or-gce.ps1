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
$tools = @(
  @{ Path = (Join-Path $env:ProgramFiles 'Amazon\EC2Launch\ec2launch.exe'); Cloud = 'an AWS EC2 instance (EC2Launch v2, '; Use = '"ec2launch.exe sysprep"' },
  @{ Path = (Join-Path $env:ProgramData 'Amazon\EC2-Windows\Launch\Scripts\SysprepInstance.ps1'); Cloud = 'an AWS EC2 instance (EC2Launch v1, '; Use = 'SysprepInstance.ps1' },
  @{ Path = (Join-Path $env:ProgramFiles 'Amazon\Ec2ConfigService\ec2config.exe'); Cloud = 'an AWS EC2 instance (EC2Config, '; Use = '"ec2config.exe -sysprep"' },
  @{ Path = (Join-Path $env:ProgramFiles 'Google\Compute Engine\sysprep\gcesysprep.bat'); Cloud = 'a Google Compute Engine VM ('; Use = 'GCESysprep' }
)
foreach ($tool in $tools) {
  if (Test-Path -LiteralPath $tool.Path) {
    [Console]::Error.WriteLine('this is ' + $tool.Cloud + $tool.Path + '): generalize it with ' + $tool.Use + $anyway)
    exit 1
  }
}
Write-Output 'no AWS or Google Cloud generalization tool found'
