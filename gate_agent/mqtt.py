"""The one place paho-mqtt is used: an MQTT 5 persistent session that reconnects by itself.

Shared by the gate's link and the collector. Callbacks become this module's own ``Message`` values;
everything else (what to publish, when a punch may be forgotten) is the caller's business.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .configfile import Table, check_secret_file, read_secret

log = logging.getLogger(__name__)

#: Session Expiry Interval meaning "never": the broker keeps the session (and queued messages) while
#: a client is away, however long the outage.
SESSION_NEVER_EXPIRES = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    keepalive: int = 30
    #: The longest pause between attempts to reach the broker (paho starts at 1 s and doubles).
    reconnect_max_seconds: float = 30.0

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None

    @classmethod
    def from_table(cls, table: Table, default_client_id: str) -> MqttSettings:
        """Read the ``[mqtt]`` table shared by both config files."""
        tls_ca, tls_cert, tls_key = (table.path(k, None) for k in ("tls_ca", "tls_cert", "tls_key"))
        if (tls_cert is None) != (tls_key is None):
            raise table.error("tls_cert" if tls_cert is None else "tls_key", "tls_cert and tls_key go together")
        if tls_cert is not None and tls_ca is None:
            raise table.error("tls_ca", "a client certificate needs tls_ca to check the broker")
        for key, path in (("tls_ca", tls_ca), ("tls_cert", tls_cert), ("tls_key", tls_key)):
            if path is not None and not path.is_file():
                raise table.error(key, f"{path} does not exist")
        if tls_key is not None:
            check_secret_file(table, "tls_key", tls_key)
        username = table.str("username", None)
        password = read_secret(table, "password_file")
        if password is not None and username is None:
            raise table.error("password_file", "a password needs a username")
        return cls(
            host=table.str("host", "127.0.0.1"),
            port=table.int("port", 8883 if tls_ca else 1883, minimum=1, maximum=65535),
            client_id=table.str("client_id", default_client_id),
            username=username,
            password=password,
            tls_ca=str(tls_ca) if tls_ca else None,
            tls_cert=str(tls_cert) if tls_cert else None,
            tls_key=str(tls_key) if tls_key else None,
            keepalive=table.int("keepalive", 30, minimum=5, maximum=3600),
            reconnect_max_seconds=table.number("reconnect_max_seconds", 30, minimum=1, maximum=3600),
        )


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int


class _ReconnectNoise(logging.Filter):
    """paho logs every failed reconnect as an ERROR ("Client is not connected"); the session says once
    that the broker is unreachable and once that it is back, so these become debug lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and "not connected" in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


class MqttSession:
    """A paho client with a persistent MQTT 5 session, backoff reconnects and optional TLS.

    ``on_message`` runs on paho's network thread: keep it short (hand the message to a queue).
    With ``manual_ack`` the broker's copy of a QoS 1 message is released only by ``ack()``, which the
    collector calls once the message is durable in its database.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        subscriptions: list[str],
        on_message: Callable[[Message], None],
        on_connected: Callable[[bool], None] | None = None,
        on_disconnected: Callable[[], None] | None = None,
        will: tuple[str, bytes] | None = None,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        max_inflight: int = 20,
        logger: logging.Logger | None = None,
    ):
        # The owning process's logger (collector.mqtt, gate_agent.mqtt): an operator greps by program.
        self._log = logger or log
        self.settings = settings
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._connected = threading.Event()
        self._closing = False
        self._outage_logged = False

        client = paho.Client(
            callback_api_version=paho.CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=paho.MQTTv5,
            manual_ack=manual_ack,
        )
        paho_log = logging.getLogger(self._log.name + ".paho")
        if not any(isinstance(f, _ReconnectNoise) for f in paho_log.filters):
            paho_log.addFilter(_ReconnectNoise())
        client.enable_logger(paho_log)
        client.reconnect_delay_set(min_delay=1, max_delay=settings.reconnect_max_seconds)
        client.max_inflight_messages_set(max_inflight)
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            client.tls_set(
                ca_certs=settings.tls_ca,
                certfile=settings.tls_cert,
                keyfile=settings.tls_key,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_connect_fail = self._handle_connect_fail
        client.on_message = self._handle_message
        self._client = client

        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_NEVER_EXPIRES
        if receive_maximum is not None:
            properties.ReceiveMaximum = receive_maximum
        self._connect_properties = properties

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background; paho's thread keeps reconnecting until stop()."""
        self._client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive,
            clean_start=False,
            properties=self._connect_properties,
        )
        self._client.loop_start()

    def stop(self, final: list[tuple[str, bytes]] = (), timeout: float = 3.0) -> None:
        """Publish ``final`` retained messages (an explicit 'offline' status), then disconnect."""
        self._closing = True
        if self.connected:
            infos = [self._client.publish(topic, payload, qos=1, retain=True) for topic, payload in final]
            deadline = time.monotonic() + timeout
            for info in infos:
                try:
                    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                except (RuntimeError, ValueError):
                    break
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ------------------------------------------------------------------ traffic

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Hand a message to paho; False when not connected (the caller keeps it and tries later).

        paho would queue it in memory while disconnected; the callers' own durable stores do that job.
        """
        if not self.connected:
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == paho.MQTT_ERR_SUCCESS

    def subscribe(self, topics: list[str]) -> None:
        """Add subscriptions now (if connected) and on every reconnect."""
        self._subscriptions = [*self._subscriptions, *topics]
        if self.connected and topics:
            self._client.subscribe([(topic, 1) for topic in topics])

    def ack(self, message: Message) -> None:
        """Release a QoS 1 message at the broker (manual_ack sessions only)."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    # ------------------------------------------------------------------ paho callbacks (network thread)

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._log.error("broker %s:%d refused %s: %s", self.settings.host, self.settings.port,
                      self.settings.client_id, reason_code)
            return
        self._outage_logged = False
        self._log.info("connected to %s:%d as %s (session %s)", self.settings.host, self.settings.port,
                 self.settings.client_id, "resumed" if flags.session_present else "new")
        if self._subscriptions:
            client.subscribe([(topic, 1) for topic in self._subscriptions])
        self._connected.set()
        if self._on_connected is not None:
            self._on_connected(bool(flags.session_present))

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and self._closing:
            self._log.info("disconnected from %s:%d", self.settings.host, self.settings.port)
        elif was_connected:
            self._log.warning("disconnected from %s:%d: %s (reconnecting with backoff)",
                        self.settings.host, self.settings.port, reason_code)
            if self._on_disconnected is not None:
                self._on_disconnected()

    def _handle_connect_fail(self, client, userdata) -> None:
        if not self._outage_logged:
            self._outage_logged = True
            self._log.warning("cannot reach broker %s:%d (retrying with backoff up to %gs)",
                        self.settings.host, self.settings.port, self.settings.reconnect_max_seconds)

    def _handle_message(self, client, userdata, msg) -> None:
        message = Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), msg.mid)
        try:
            self._on_message(message)
        except Exception:  # a bug in a handler must not kill paho's network thread
            self._log.exception("handler failed for a message on %s", message.topic)
