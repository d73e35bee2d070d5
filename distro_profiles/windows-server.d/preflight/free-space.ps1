$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
$disk = Get-CimInstance -ClassName Win32_LogicalDisk -Filter ("DeviceID='" + $env:SystemDrive + "'")
$freeMb = [math]::Floor($disk.FreeSpace / 1MB)
if ($freeMb -lt [int]{{ vars.min_free_mb }}) {
  [Console]::Error.WriteLine('only ' + $freeMb + ' MiB free on ' + $env:SystemDrive + ', need at least ' + {{ vars.min_free_mb }} + ' MiB: free some space (for example DISM /Online /Cleanup-Image /StartComponentCleanup)')
  exit 1
}
Write-Output ('' + $freeMb + ' MiB free on ' + $env:SystemDrive)
