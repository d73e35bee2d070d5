$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
if ($identity.IsSystem) {
  [Console]::Error.WriteLine('connected as ' + $identity.Name + ': Sysprep is not supported under SYSTEM (it breaks AppX registration); connect as an administrator account')
  exit 1
}
$principal = New-Object Security.Principal.WindowsPrincipal($identity)
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
  [Console]::Error.WriteLine($identity.Name + ' has no elevated administrator token: use the built-in Administrator or a domain administrator (remote UAC filters other local administrators unless LocalAccountTokenFilterPolicy is 1)')
  exit 1
}
Write-Output ('elevated administrator: ' + $identity.Name)
