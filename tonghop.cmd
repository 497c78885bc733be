@echo off
rem tonghop on Windows. Double-click: set up on first use, ask the period, consolidate, show the results.
rem In a Command Prompt opened in this folder: tonghop.cmd templates --period 2020-H2 (any tonghop command).
rem Needs Python 3.11 or newer (python.org); everything else is pipeline\launcher.py.
setlocal
chcp 65001 >nul
set PYTHONUTF8=1
cd /d "%~dp0"
set "PY="
where py >nul 2>nul && set "PY=py -3"
if not defined PY where python >nul 2>nul && set "PY=python"
if not defined PY goto nopython
%PY% -m pipeline.launcher %*
rem 9009: "python" is only the Microsoft Store's placeholder, no Python is installed
if errorlevel 9009 if not errorlevel 9010 goto nopython
exit /b %errorlevel%

:nopython
echo Chưa có Python trên máy này.
echo Đề nghị cài Python 3.11 trở lên từ https://www.python.org/downloads/
echo (khi cài, đánh dấu ô "Add python.exe to PATH"), rồi bấm đúp lại tệp tonghop.cmd.
pause
exit /b 2
