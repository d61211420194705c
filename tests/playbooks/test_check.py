"""check.yml, the app's CI gate: it passes an app a deploy would ship, and fails, saying why and what to
do, on each way a team's commit breaks a deploy before any host sees it."""

from apps import edit, relock

FLAKY_ROUTE = """
    calls = {"n": 0}

    async def flaky(request):
        calls["n"] += 1
        return JSONResponse({"n": calls["n"]}, status_code=500 if calls["n"] % 7 == 0 else 200)

    routes = [Route("/flaky", flaky), """


def said(done):
    return done.stdout + done.stderr


def test_an_app_a_deploy_would_ship_passes_with_its_numbers(notes, check):
    done, report = check(notes())
    assert done.returncode == 0, said(done)
    assert "check: the lock is fresh, the app starts and gates as a deploy would" in done.stdout
    assert report["problems"] == [] and report["readiness"] == ""
    # The load ran (how many requests it made is the machine's speed, not the app's behaviour).
    assert report["load"]["requests"] > 0, report
    assert report["load"]["failures"] == 0, report


def test_the_django_site_passes_on_the_ci_database_with_its_static_files(polls, check, tmp_path):
    done, report = check(
        polls,
        lock="requirements.lock",
        asgi_app="polls",
        asgi_entrypoint="mysite.asgi:application",
        asgi_readiness_path="/healthz",
        asgi_build="python -m django collectstatic --noinput",
        # What the hosts use: the check must not reach it (the name does not resolve).
        service_environment={
            "DJANGO_SETTINGS_MODULE": "mysite.settings",
            "DJANGO_ALLOWED_HOSTS": "localhost",
            "DATABASE_URL": "postgres://polls:secret@db.invalid:5432/polls",
        },
        service_secrets={"django_secret_key": "ci-secret-key"},
        service_check_environment={"DATABASE_URL": f"sqlite:///{tmp_path}/ci.sqlite3"},
        service_check_before_start=["python -m django migrate --noinput"],
        service_check_paths=["/healthz", "/polls/", "/static/polls/style.css"],
    )
    assert done.returncode == 0, said(done)
    assert report["load"]["requests"] >= 3 and report["load"]["failures"] == 0, report  # each path, in turn
    assert (tmp_path / "ci.sqlite3").stat().st_size > 0, "the migration ran on the CI database"


def test_a_failing_before_start_command_fails_with_its_output(notes, check):
    done, _ = check(notes(), service_check_before_start=["echo seeding; exit 3"])
    assert done.returncode != 0
    assert "the before-start command `echo seeding; exit 3` failed (exit 3); its last lines:" in done.stdout, said(done)
    assert "  seeding" in done.stdout


def test_a_hashed_requirements_lock_fresh_against_its_input_passes(notes, check):
    app = notes("requirements.lock")
    done, report = check(app, lock="requirements.lock")
    assert done.returncode == 0, said(done)
    assert report["lock"] == []


def test_a_dependency_added_without_relocking_fails_with_the_relock_command(notes, check):
    app = notes()
    edit(app / "pyproject.toml", '"starlette>=0.40",', '"starlette>=0.40",\n  "itsdangerous>=2",')
    done, report = check(app)
    assert done.returncode != 0
    assert "is stale against pyproject.toml" in done.stdout, said(done)
    assert f"relock with: uv lock --project {app}" in done.stdout
    assert report["load"] == {}, "a stale lock must stop the check before the app is built"


def test_a_stale_hashed_requirements_lock_names_the_pins_it_misses(notes, check):
    app = notes("requirements.lock")
    edit(app / "pyproject.toml", '"starlette>=0.40",', '"starlette>=0.40",\n  "itsdangerous>=2",')
    done, _ = check(app, lock="requirements.lock")
    assert done.returncode != 0
    assert "is stale against its input (+ itsdangerous==" in done.stdout, said(done)
    assert "relock with: uv pip compile" in done.stdout


def test_a_lock_without_the_server_stack_fails_before_anything_is_built(notes, check):
    app = notes()
    # uvicorn-worker requires gunicorn: both go, as when a team drops "the deploy's packages".
    edit(app / "pyproject.toml", '"gunicorn>=23",', "")
    edit(app / "pyproject.toml", '"uvicorn-worker>=0.3",', "")
    relock(app)
    done, report = check(app)
    assert done.returncode != 0
    assert "gunicorn" in done.stdout and "uvicorn-worker" in done.stdout, said(done)
    assert report is None, "the deploy's own checks failed: the app must not have been started"


def test_an_app_that_never_gets_ready_fails_with_its_last_answer_and_log(notes, check):
    done, report = check(notes(), service_environment={"NOTES_STARTUP_SECONDS": "600"}, asgi_readiness_timeout=5)
    assert done.returncode != 0
    assert "the app did not answer /health with 200 within 5s (/health: " in done.stdout, said(done)
    assert "Waiting for application startup" in done.stdout, "the app's log must be shown"
    assert report["load"] == {}


def test_an_app_that_fails_requests_under_load_fails_with_the_numbers(notes, check):
    app = notes()
    edit(app / "src/notes/app.py", "\n    routes = [", FLAKY_ROUTE)
    done, report = check(app, service_check_paths=["/flaky"])
    assert done.returncode != 0
    load = report["load"]
    assert load["failures"] > 0 and load["requests"] > load["failures"], load
    assert f"{load['failures']} of {load['requests']} requests failed" in done.stdout, said(done)
    assert "/flaky: HTTP 500" in done.stdout


def test_a_failure_ratio_within_the_threshold_passes(notes, check):
    app = notes()
    edit(app / "src/notes/app.py", "\n    routes = [", FLAKY_ROUTE)
    done, report = check(app, service_check_paths=["/flaky"], service_check_max_failure_ratio=0.2)
    assert done.returncode == 0, said(done)
    assert 0 < report["load"]["failure_ratio"] <= 0.2, report
