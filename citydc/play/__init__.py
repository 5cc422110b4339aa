"""``citydc play``: Ansible playbooks run through ansible-runner's Python API, every run in the security log.

Flow: cli/play_cmd → play.runner (ansible-runner, secrets kept out of its files) → play.events (ECS
events from the runner's event stream) → seclog.emit; play.view draws the live terminal view.
"""
