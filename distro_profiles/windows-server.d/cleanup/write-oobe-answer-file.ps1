# Answer file settings: "Unattended Windows Setup Reference" (MS Learn):
# Microsoft-Windows-PnpSysprep/PersistAllDeviceInstalls (generalize pass),
# Microsoft-Windows-International-Core and Microsoft-Windows-Shell-Setup (OOBE,
# TimeZone, UserAccounts/AdministratorPassword) in the oobeSystem pass. A password
# is stored as base64 of UTF-16LE(password + 'AdministratorPassword') with
# PlainText false, as Windows SIM writes it: hidden from a glance, not encrypted,
# which is why SetupComplete.cmd (run by Setup before the first logon, "Add a
# Custom Script to Windows Setup") deletes the file and Setup's cached copies.
$ErrorActionPreference = 'Stop'
if ({{ vars.sysprep_unattend }}) {
  [Console]::Error.WriteLine('sysprep_unattend and oobe_answer_file exclude each other: choose one answer file')
  exit 1
}
$locale = {{ vars.oobe_locale }}
$timeZone = {{ vars.oobe_timezone }}
if ($locale -notmatch '^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$') { [Console]::Error.WriteLine('oobe_locale ' + $locale + ' is not a locale name like en-US'); exit 1 }
if ($timeZone -notmatch '^[A-Za-z0-9 ()+.,_-]+$') { [Console]::Error.WriteLine('oobe_timezone ' + $timeZone + ' is not a Windows time zone id like UTC or W. Europe Standard Time'); exit 1 }
$accounts = ''
if ({{ vars.oobe_admin_password_env }}) {
  $password = $env:IMAGEPREP_OOBE_ADMIN_PASSWORD
  if (-not $password) { [Console]::Error.WriteLine('oobe_admin_password_env is set but the password did not reach the shell'); exit 1 }
  $encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($password + 'AdministratorPassword'))
  $accounts = '<UserAccounts><AdministratorPassword><Value>' + $encoded + '</Value><PlainText>false</PlainText></AdministratorPassword></UserAccounts>'
}
$component = 'processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS"'
# The comma binds tighter than +: each concatenated element is parenthesized.
$lines = @(
  '<?xml version="1.0" encoding="utf-8"?>',
  '<unattend xmlns="urn:schemas-microsoft-com:unattend">',
  '  <settings pass="generalize">',
  ('    <component name="Microsoft-Windows-PnpSysprep" ' + $component + '><PersistAllDeviceInstalls>true</PersistAllDeviceInstalls></component>'),
  '  </settings>',
  '  <settings pass="oobeSystem">',
  ('    <component name="Microsoft-Windows-International-Core" ' + $component + '><InputLocale>' + $locale + '</InputLocale><SystemLocale>' + $locale + '</SystemLocale><UILanguage>' + $locale + '</UILanguage><UserLocale>' + $locale + '</UserLocale></component>'),
  ('    <component name="Microsoft-Windows-Shell-Setup" ' + $component + '><OOBE><HideEULAPage>true</HideEULAPage><HideLocalAccountScreen>true</HideLocalAccountScreen><HideOnlineAccountScreens>true</HideOnlineAccountScreens><HideWirelessSetupInOOBE>true</HideWirelessSetupInOOBE><ProtectYourPC>3</ProtectYourPC></OOBE><TimeZone>' + $timeZone + '</TimeZone>' + $accounts + '</component>'),
  '  </settings>',
  '</unattend>'
)
$answerFile = Join-Path $env:SystemRoot 'System32\Sysprep\imageprep-oobe.xml'
Set-Content -LiteralPath $answerFile -Value ($lines -join "`r`n") -Encoding UTF8
$scripts = Join-Path $env:SystemRoot 'Setup\Scripts'
$setupComplete = Join-Path $scripts 'SetupComplete.cmd'
$marker = 'rem imageprep: delete the OOBE answer file'
if ((Test-Path -LiteralPath $setupComplete) -and -not (@(Get-Content -LiteralPath $setupComplete) -contains $marker)) {
  [Console]::Error.WriteLine($setupComplete + ' exists and is not imageprep''s: add a line deleting ' + $answerFile + ' to it, or remove it, then run again')
  exit 1
}
$commands = @(
  '@echo off',
  $marker,
  'del /q /f "%WINDIR%\System32\Sysprep\imageprep-oobe.xml"',
  'del /q /f "%WINDIR%\Panther\unattend.xml"',
  'del /q /f "%WINDIR%\Panther\Unattend\unattend.xml"'
)
Set-Content -LiteralPath $setupComplete -Value ($commands -join "`r`n") -Encoding ASCII
Write-Output ('wrote ' + $answerFile + ' (locale ' + $locale + ', time zone ' + $timeZone + ', administrator password: ' + [bool]$accounts + ') and ' + $setupComplete + ', which deletes it at first boot')
