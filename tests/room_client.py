"""A student of a lab room, as the tests play one: log in through the hub's login form, start
JupyterLab through the hub's API, and run code in a notebook kernel the way JupyterLab does
(its REST API and the kernel's websocket). Only the standard protocols: nothing of the room's own."""

from __future__ import annotations

import json
import time
import uuid

import requests
import websocket


class Student:
    def __init__(self, base: str, login: str, password: str) -> None:
        self.base, self.login = base.rstrip("/"), login
        self.session = requests.Session()
        self.session.get(f"{self.base}/hub/login", timeout=30)
        answer = self.session.post(f"{self.base}/hub/login?next=", timeout=30, allow_redirects=False, data={
            "username": login, "password": password, "_xsrf": self.session.cookies.get("_xsrf", "")})
        self.logged_in = answer.status_code == 302 and "jupyterhub-session-id" in self.session.cookies

    def xsrf(self) -> dict[str, str]:
        return {"X-XSRFToken": self.session.cookies.get("_xsrf", path="/hub/") or
                self.session.cookies.get("_xsrf") or ""}

    def start_jupyterlab(self, timeout: float = 180) -> float:
        """Ask the hub to start this student's JupyterLab; seconds until it answers."""
        began = time.monotonic()
        answer = self.session.post(f"{self.base}/hub/api/users/{self.login}/server", headers=self.xsrf(), timeout=60)
        assert answer.status_code in (201, 202, 400), answer.text          # 400: already running
        while time.monotonic() - began < timeout:
            status = self.session.get(f"{self.base}/hub/api/users/{self.login}", headers=self.xsrf(), timeout=30)
            if status.ok and status.json().get("servers", {}).get("", {}).get("ready"):
                break
            time.sleep(1)
        else:
            raise AssertionError(f"{self.login}'s JupyterLab did not start in {timeout} s")
        lab = self.session.get(f"{self.base}/user/{self.login}/lab", timeout=60)
        assert lab.ok, lab.status_code
        return time.monotonic() - began

    def api(self, path: str) -> str:
        return f"{self.base}/user/{self.login}/api/{path}"

    def terminal(self, steps: list[tuple[str, str]], timeout: float = 120) -> str:
        """Type into a new terminal of this student's JupyterLab, as in its Terminal tab (terminado's
        protocol): for each (keys, text), send the keys and read until the text shows after them; all it
        showed."""
        self.session.get(f"{self.base}/user/{self.login}/lab", timeout=60)
        token = {"X-XSRFToken": self.session.cookies.get("_xsrf", path=f"/user/{self.login}/") or ""}
        made = self.session.post(self.api("terminals"), headers=token, timeout=60)
        assert made.ok, made.text
        name = made.json()["name"]
        url = f"{self.base}/user/{self.login}/terminals/websocket/{name}".replace("http", "ws", 1)
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        channel = websocket.create_connection(url, header=[f"Cookie: {cookies}", f"X-XSRFToken: {token['X-XSRFToken']}"],
                                              timeout=timeout)
        channel.send(json.dumps(["set_size", 40, 80, 600, 800]))
        shown = ""
        try:
            for keys, awaited in steps:
                channel.send(json.dumps(["stdin", keys]))
                began, mark = time.monotonic(), len(shown)
                while awaited not in shown[mark:]:
                    assert time.monotonic() - began < timeout, f"no {awaited!r} in {shown[-800:]!r}"
                    message = json.loads(channel.recv())
                    if message[0] == "stdout":
                        shown += message[1]
        finally:
            channel.close()
            self.session.delete(self.api(f"terminals/{name}"), headers=token, timeout=30)
        return shown

    def run(self, code: str, timeout: float = 300) -> tuple[str, list[str]]:
        """Run ``code`` in a new kernel of this student's JupyterLab: (its text output, its errors)."""
        self.session.get(f"{self.base}/user/{self.login}/lab", timeout=60)        # the server's own _xsrf cookie
        token = {"X-XSRFToken": self.session.cookies.get("_xsrf", path=f"/user/{self.login}/") or ""}
        kernel = self.session.post(self.api("kernels"), json={"name": "python3"}, headers=token, timeout=60)
        assert kernel.ok, kernel.text
        kernel_id = kernel.json()["id"]
        url = self.api(f"kernels/{kernel_id}/channels").replace("http", "ws", 1)
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        channel = websocket.create_connection(url, header=[f"Cookie: {cookies}", f"X-XSRFToken: {token['X-XSRFToken']}"],
                                              timeout=timeout)
        message_id = uuid.uuid4().hex
        channel.send(json.dumps({
            "header": {"msg_id": message_id, "username": self.login, "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        out, errors = [], []
        began = time.monotonic()
        try:
            while time.monotonic() - began < timeout:
                message = json.loads(channel.recv())
                if message.get("parent_header", {}).get("msg_id") != message_id:
                    continue
                kind, content = message["msg_type"], message["content"]
                if kind == "stream":
                    out.append(content["text"])
                elif kind in ("execute_result", "display_data"):
                    out.append(content.get("data", {}).get("text/plain", ""))
                elif kind == "error":
                    errors.append(f"{content['ename']}: {content['evalue']}")
                elif kind == "status" and content["execution_state"] == "idle":
                    break
        finally:
            channel.close()
            self.session.delete(self.api(f"kernels/{kernel_id}"), headers=token, timeout=30)
        return "".join(out), errors
