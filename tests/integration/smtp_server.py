"""A real SMTP server on loopback for tests (aiosmtpd), with switchable misbehaviour.

    with SmtpServer() as server:                  # listening on 127.0.0.1:<free port>
        ...send...
        [message] = [parse(e) for e in server.received]
        server.set(Behaviour.TEMP_FAIL_DATA, times=1)   # next DATA gets "451", then normal

    server = SmtpServer()                          # a port nobody listens on yet
    server.start(); ...; server.stop()             # stop and start again on the same port

Only accepted messages are recorded in ``received``; a message the server refused,
dropped or stalled on is not, so ``len(server.received)`` counts real deliveries.
``connections`` counts SMTP sessions the server has seen since the last start.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from enum import StrEnum
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


class Behaviour(StrEnum):
    NORMAL = "normal"
    TEMP_FAIL_DATA = "temp_fail_data"  # "451 try later" after the data arrives
    REJECT_RCPT = "reject_rcpt"  # "550 no such user" to every RCPT TO
    DROP_IN_DATA = "drop_in_data"  # close the connection after the data, never reply
    SLOW = "slow"  # sit on the data past the client's timeout, then 451
    REJECT_SENDER = "reject_sender"  # "553" to MAIL FROM
    REJECT_DATA = "reject_data"  # "554" after the data arrives


TEMP_FAIL_REPLY = "451 4.3.0 try later"
REJECT_REPLY = "550 5.1.1 no such user"
REJECT_SENDER_REPLY = "553 5.7.1 sender address rejected"
REJECT_DATA_REPLY = "554 5.6.0 message content rejected"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes


def parse(envelope: Received) -> EmailMessage:
    """The received bytes as a message object (modern policy: ``msg["Subject"]`` decoded)."""
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if self.owner._take(Behaviour.REJECT_SENDER):
            return REJECT_SENDER_REPLY
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.owner._take(Behaviour.REJECT_RCPT) or address in self.owner.reject_addresses:
            return REJECT_REPLY
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        owner = self.owner
        if owner._take(Behaviour.DROP_IN_DATA):
            # The client has sent the whole message and now waits for a reply that never
            # comes: it cannot know whether the message was accepted.
            server.transport.close()
            await asyncio.sleep(3600)  # cancelled by aiosmtpd when the connection closes
        if owner._take(Behaviour.SLOW):
            await asyncio.sleep(owner.slow_seconds)
            return TEMP_FAIL_REPLY
        if owner._take(Behaviour.TEMP_FAIL_DATA):
            return TEMP_FAIL_REPLY
        if owner._take(Behaviour.REJECT_DATA):
            return REJECT_DATA_REPLY
        with owner._lock:
            owner.received.append(
                Received(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 2.0.0 OK queued"


class _Controller(Controller):
    def __init__(self, owner: SmtpServer, **kwargs: Any) -> None:
        super().__init__(_Handler(owner), **kwargs)
        self.owner = owner

    def factory(self) -> Any:
        with self.owner._lock:
            self.owner.connections += 1
        return super().factory()


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1; a context manager that starts and stops it.

    ``credentials=("user", "password")`` makes it offer AUTH (without TLS) and accept
    only those; ``echo_password_on_failure`` makes a failed AUTH reply quote the password
    it got, as a careless server might, to prove the client never repeats it.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        credentials: tuple[str, str] | None = None,
        echo_password_on_failure: bool = False,
        slow_seconds: float = 3.0,
    ) -> None:
        self.host = HOST
        self.port = port or free_port()
        self.credentials = credentials
        self.echo_password_on_failure = echo_password_on_failure
        self.slow_seconds = slow_seconds
        self.reject_addresses: set[str] = set()
        self.received: list[Received] = []
        self.connections = 0
        self.logins: list[str] = []
        self._behaviour = Behaviour.NORMAL
        self._times: int | None = None
        self._lock = threading.Lock()
        self._controller: _Controller | None = None

    # -- behaviour -------------------------------------------------------------------
    def set(self, behaviour: Behaviour, *, times: int | None = None) -> None:
        """Misbehave from now on, or only for the next ``times`` uses, then act normal.

        A use is one DATA (for REJECT_RCPT, one RCPT TO address; for REJECT_SENDER, one
        MAIL FROM).
        """
        with self._lock:
            self._behaviour = behaviour
            self._times = times

    @property
    def behaviour(self) -> Behaviour:
        return self._behaviour

    def _take(self, behaviour: Behaviour) -> bool:
        with self._lock:
            if self._behaviour is not behaviour:
                return False
            if self._times is not None:
                self._times -= 1
                if self._times <= 0:
                    self._behaviour, self._times = Behaviour.NORMAL, None
            return True

    # -- lifecycle -------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> SmtpServer:
        if self._controller is not None:
            return self
        kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            kwargs.update(auth_require_tls=False, authenticator=self._authenticator())
        controller = _Controller(
            self, hostname=self.host, port=self.port, server_hostname="smtp.test", **kwargs
        )
        controller.start()
        self._controller = controller
        with self._lock:
            self.connections = 0  # start() itself connects once to check the server is up
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _authenticator(self) -> Callable[..., AuthResult]:
        assert self.credentials is not None
        user, password = self.credentials

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
        ) -> AuthResult:
            if not isinstance(auth_data, LoginPassword):
                return AuthResult(success=False, handled=False)
            login = auth_data.login.decode("utf-8", "replace")
            given = auth_data.password.decode("utf-8", "replace")
            if login == user and given == password:
                with self._lock:
                    self.logins.append(login)
                return AuthResult(success=True, auth_data=auth_data)
            message = "535 5.7.8 Authentication credentials invalid"
            if self.echo_password_on_failure:
                message += f" (user {login}, password {given})"
            return AuthResult(success=False, handled=False, message=message)

        return authenticate
