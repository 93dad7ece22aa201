"""ferroloop.Loop: the Rust scheduling core plus asyncio's cold paths.

Everything on the hot path (call_soon & co, timers, the iteration, Future and
Task) is implemented by ``_ferroloop.LoopCore``. Methods that run rarely and
whose exact behaviour matters more than their speed — the exception handler,
executors, async generator bookkeeping, ``run_until_complete``, DNS — are the
functions of asyncio's own ``BaseEventLoop``, bound to this class. They only
rely on the public loop API and on a handful of attributes that ``__init__``
sets up, so ferroloop behaves exactly like asyncio there by construction.

The I/O half is transitional: descriptor readiness (``_add_reader`` and
friends) is native, on the Rust reactor, while sockets, servers and
transports are asyncio's selector-based ones driven by it. Native
transports replace them with the networking work (see docs/DIFFERENCES.md).
"""

import asyncio
import concurrent.futures
import errno
import os
import selectors
import signal
import socket
import warnings
import logging
import sys
import threading
import traceback
import types
import weakref

try:
    import ssl
except ImportError:  # a Python built without ssl
    ssl = None
from asyncio import base_events, constants, coroutines, events, selector_events, unix_events

from . import _ferroloop, _metrics
from ._tls import _SSLProtocol
from ._transports import DatagramTransport, SocketTransport

__all__ = ("Loop", "new_event_loop")

logger = logging.getLogger("asyncio")
# A child of asyncio's logger: configuring "asyncio" (level, handlers)
# applies to ferroloop's detail records too.
_slow_logger = logging.getLogger("asyncio.ferroloop")
# Innermost frames the watchdog shows (the loop's own run_forever frames
# above them say nothing).
_WATCHDOG_STACK_LIMIT = 30

_BaseEventLoop = base_events.BaseEventLoop
_PY313 = sys.version_info >= (3, 13)
_Future = _ferroloop.Future

# asyncio functions reused by reference (not copied): cold paths whose exact
# behaviour is asyncio's by construction.
_BORROWED_BASE = (
    "run_until_complete",
    "_check_running",
    "_check_callback",
    "_set_coroutine_origin_tracking",
    "_asyncgen_finalizer_hook",
    "_asyncgen_firstiter_hook",
    "shutdown_asyncgens",
    "shutdown_default_executor",
    "_do_shutdown",
    "_check_default_executor",
    "set_default_executor",
    "_getaddrinfo_debug",
    "set_exception_handler",
    "get_exception_handler",
    "default_exception_handler",
    "call_exception_handler",
    "__del__",
    # I/O built on the transports (see module docstring)
    "create_connection",
    "_connect_sock",
    "_create_connection_transport",
    "sendfile",
    "_sendfile_fallback",
    "_check_sendfile_params",
    "create_datagram_endpoint",
    "_ensure_resolved",
    "_create_server_getaddrinfo",
    "create_server",
    "connect_accepted_socket",
    "connect_read_pipe",
    "connect_write_pipe",
    "sock_sendfile",
    "_sock_sendfile_fallback",
    "subprocess_exec",
    "subprocess_shell",
    "_log_subprocess",
) + (("_check_sock_sendfile_params",) if hasattr(_BaseEventLoop, "_check_sock_sendfile_params") else ())

_BORROWED_SELECTOR = (
    "_read_from_self",
    "_start_serving",
    "_accept_connection",
    "_accept_connection2",
    "_ensure_fd_no_transport",
    "add_reader",
    "remove_reader",
    "add_writer",
    "remove_writer",
    "_sendfile_native",
) + (() if _PY313 else ("_stop_serving",))

_BORROWED_UNIX = (
    "_process_self_data",
    "_handle_signal",
    "_check_signal",
    "remove_signal_handler",
    "_make_read_pipe_transport",
    "_make_write_pipe_transport",
    "create_unix_connection",
    "create_unix_server",
    "_sock_sendfile_native",
    "_sock_sendfile_native_impl",
    "_sock_sendfile_update_filepos",
    "_sock_add_cancellation_callback",
)


# asyncio functions that a method of Loop calls explicitly after doing its
# own part (tests/test_asyncio_private_api.py checks them as the borrowed).
_WRAPPED = ((unix_events._UnixSelectorEventLoop, "add_signal_handler"),)


_NOT_EXITED = object()
_P_PIDFD = getattr(os, "P_PIDFD", None)


def _reap_exited(pid, pidfd):
    """The return code of the exited child behind ``pidfd``, or _NOT_EXITED.

    Raises ChildProcessError if it was reaped elsewhere."""
    if _P_PIDFD is not None:
        try:
            info = os.waitid(_P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: Linux 5.3 has pidfds, not P_PIDFD
                raise
        else:
            if info is None:
                return _NOT_EXITED
            # CLD_KILLED and CLD_DUMPED carry the signal, as negative codes do.
            return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
    done, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status) if done else _NOT_EXITED


class _SelectorView:
    """What asyncio's transports read from ``loop._selector`` (their reprs
    ask whether a descriptor is being polled), answered from the reactor."""

    __slots__ = ("_loop",)

    def __init__(self, loop):
        self._loop = weakref.ref(loop)

    def get_key(self, fd):
        loop = self._loop()
        cbs = None if loop is None else loop._fd_callbacks(fd)
        if cbs is None:
            raise KeyError(fd)
        reader, writer = cbs
        events = (selectors.EVENT_READ if reader else 0) | (selectors.EVENT_WRITE if writer else 0)
        return selectors.SelectorKey(fd, fd, events, (reader, writer))


class Loop(_ferroloop.LoopCore, asyncio.AbstractEventLoop):
    """An asyncio event loop whose core runs in Rust."""

    def __init__(self):
        self._default_executor = None
        self._executor_shutdown_called = False
        self._exception_handler = None
        self._current_handle = None
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._transports = weakref.WeakValueDictionary()
        self._selector = _SelectorView(self)
        # Self-pipe for signal delivery, created with the first signal
        # handler: until then no descriptor is registered and an iteration
        # that must not block skips the poll syscall entirely.
        self._ssock = None
        self._csock = None
        self._internal_fds = 0
        self._signal_handlers = {}
        self._children = {}
        if _PY313:
            # create_unix_server(cleanup_socket=True) (3.13) records here the
            # inode of each path it bound; _stop_serving unlinks it.
            self._unix_server_sockets = {}
        self.set_debug(coroutines._is_debug_mode())
        # Read once per loop, never on the hot path (docs/observability.md);
        # close() asks the inspector itself whether this loop was inspected.
        if os.environ.get("FERROLOOP_INSPECT", "") not in ("", "0"):
            from . import inspector

            inspector.enable(self)
        watchdog = os.environ.get("FERROLOOP_WATCHDOG")
        if watchdog:
            try:
                self.set_watchdog(float(watchdog))
            except ValueError:
                # A typo in an environment variable must not stop the program.
                logger.warning("FERROLOOP_WATCHDOG=%r is not a number of seconds; watchdog off", watchdog)

    if _PY313:
        def _stop_serving(self, sock):
            # asyncio 3.13's Unix loop removes the socket file of a
            # cleanup_socket=True server when it stops serving, unless the
            # path has been bound again since (another inode). Its own method
            # cannot be borrowed: it reaches the selector loop with super().
            path = sock.getsockname() if sock in self._unix_server_sockets else None
            selector_events.BaseSelectorEventLoop._stop_serving(self, sock)
            if path is None:
                return
            inode = self._unix_server_sockets.pop(sock)
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

    @property
    def _debug(self):
        return self.get_debug()

    @property
    def _closed(self):
        return self.is_closed()

    def run_in_executor(self, executor, func, *args):
        if executor is None and self._default_executor is None and not self._executor_shutdown_called and not self.is_closed():
            # The default executor's threads are named after the loop
            # (ferroloop_0, ...), as uvloop names its own.
            self._default_executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="ferroloop")
        return _BaseEventLoop.run_in_executor(self, executor, func, *args)

    def __repr__(self):
        return (
            f"<{self.__class__.__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )

    def set_debug(self, enabled):
        super().set_debug(enabled)
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    def run_forever(self):
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self.get_debug())
        old_agen_hooks = sys.get_asyncgen_hooks()
        try:
            self._set_running(True)
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            self._run_forever_core()
        finally:
            self._set_running(False)
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def close(self):
        """Close the loop: drop pending callbacks, shut the default executor,
        restore signal dispositions and stop watching children."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self.get_debug():
            logger.debug("Close %r", self)
        if self._signal_handlers:
            if sys.is_finalizing():
                warnings.warn(
                    f"Closing the loop {self!r} on interpreter shutdown stage, "
                    f"skipping signal handlers removal",
                    ResourceWarning,
                    source=self,
                )
                self._signal_handlers.clear()
            else:
                for sig in list(self._signal_handlers):
                    self.remove_signal_handler(sig)
        for pidfd, _pid, _transp in self._children.values():
            if pidfd is not None:
                os.close(pidfd)
        self._children.clear()
        self._close_core()
        self._selector = None
        if self._ssock is not None:
            self._ssock.close()
            self._csock.close()
            self._ssock = self._csock = None
            self._internal_fds -= 1
        # The socket file goes with the last inspected loop. Looked up, not
        # imported: only a process that enabled the inspector has it, and a
        # close() from __del__ at interpreter shutdown can no longer import.
        inspector = sys.modules.get("ferroloop.inspector")
        if inspector is not None:
            inspector.disable(self)
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    # --- signals -------------------------------------------------------------
    # asyncio's add/remove_signal_handler (borrowed above) route signals
    # through signal.set_wakeup_fd(self._csock); the reactor watches _ssock.

    def add_signal_handler(self, sig, callback, *args):
        if not self.is_closed() and self._ssock is None:
            self._ssock, self._csock = socket.socketpair()
            self._ssock.setblocking(False)
            self._csock.setblocking(False)
            self._internal_fds += 1
            self._add_reader(self._ssock.fileno(), self._read_from_self)
        return unix_events._UnixSelectorEventLoop.add_signal_handler(self, sig, callback, *args)

    def _add_callback_signalsafe(self, handle):
        self.call_soon(_run_unless_cancelled, handle)

    # --- subprocesses ----------------------------------------------------------
    # asyncio's subprocess transport; the child's exit is watched by the
    # reactor through a pidfd (no watcher thread, no SIGCHLD handler).

    async def _make_subprocess_transport(
        self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
    ):
        waiter = self.create_future()
        transp = unix_events._UnixSubprocessTransport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize,
            waiter=waiter, extra=extra, **kwargs,
        )
        self._watch_child(transp.get_pid(), transp)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    def _watch_child(self, pid, transp):
        # A child that has already exited still yields a readable pidfd, so
        # an early exit is never missed.
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno not in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
                raise
            return self._watch_child_with_sigchld(pid, transp)
        self._children[pid] = (pidfd, pid, transp)
        self._add_reader(pidfd, self._child_exited, pid)

    def _watch_child_with_sigchld(self, pid, transp):
        # Fallback without pidfds (Linux < 5.3, some sandboxes): SIGCHLD,
        # through the loop's own signal handling, then a non-blocking
        # waitpid for each watched child. Only the main thread can do this.
        self._children[pid] = (None, pid, transp)
        if signal.SIGCHLD not in self._signal_handlers:
            self.add_signal_handler(signal.SIGCHLD, self._reap_children)
        # The child may have exited before the handler was in place.
        self._reap_children()

    def _reap_children(self):
        for pid, (pidfd, _, _) in list(self._children.items()):
            if pidfd is not None:
                continue
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, None
            if done:
                self._child_done(pid, status)
        if signal.SIGCHLD in self._signal_handlers and not any(
            entry[0] is None for entry in self._children.values()
        ):
            self.remove_signal_handler(signal.SIGCHLD)

    def _child_exited(self, pid):
        pidfd = self._children[pid][0]
        # Reaped by the pidfd and without blocking. By pid, a child that
        # something else reaped may have handed its pid on (pid_max can be
        # 32768) and waitpid(pid, 0) would freeze the loop on that other
        # process and take its status; and a readiness that is not an exit
        # (a stale epoll entry under a reused number) would block as well.
        try:
            returncode = _reap_exited(pid, pidfd)
        except ChildProcessError:
            returncode = None
        else:
            if returncode is _NOT_EXITED:
                return
        # Out of the table before the number is released, so that close()
        # can never close it a second time.
        _, _, transp = self._children.pop(pid)
        try:
            self._remove_reader(pidfd)
        finally:
            os.close(pidfd)
        self._report_exit(pid, transp, returncode)

    def _child_done(self, pid, status):
        _, _, transp = self._children.pop(pid)
        self._report_exit(pid, transp, None if status is None else os.waitstatus_to_exitcode(status))

    def _report_exit(self, pid, transp, returncode):
        if returncode is None:
            # Reaped elsewhere (e.g. by a foreign os.wait()): as asyncio does.
            returncode = 255
            logger.warning("child process pid %d exit status already read:  will report returncode 255", pid)
        if self.get_debug():
            logger.debug("process %s exited with returncode %s", pid, returncode)
        # Let pending pipe callbacks run first, like asyncio's watcher
        # callback (which defers by one iteration).
        self.call_soon(self.call_soon, transp._process_exited, returncode)

    # --- DNS ---------------------------------------------------------------------
    # asyncio runs every lookup in the default executor. When the host and
    # port are already numeric, getaddrinfo/getnameinfo answer without any
    # lookup if told so (AI_NUMERICHOST/NI_NUMERICHOST...): same function,
    # same result, no thread. Anything else, or any error, takes asyncio's
    # executor path (which then raises asyncio's error).

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        if not self.get_debug():
            try:
                return socket.getaddrinfo(
                    host, port, family, type, proto,
                    flags | socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            except (socket.gaierror, UnicodeError, TypeError, OSError):
                pass
        return await _BaseEventLoop.getaddrinfo(
            self, host, port, family=family, type=type, proto=proto, flags=flags
        )

    async def getnameinfo(self, sockaddr, flags=0):
        numeric = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
        if flags & numeric == numeric:
            try:
                return socket.getnameinfo(sockaddr, flags)
            except (socket.gaierror, OSError, TypeError):
                pass
        return await _BaseEventLoop.getnameinfo(self, sockaddr, flags)

    # --- sock_* ----------------------------------------------------------------
    # _sock_wait_note: a failed operation's exception keeps this frame alive
    # (its traceback); the frame must not keep the future that holds the
    # exception, or every failure leaves a reference cycle for the collector
    # (asyncio removed it in gh-124859).
    # One native call makes asyncio's argument checks, tries the syscall and,
    # if the socket is not ready, returns a Future completed from the reactor
    # (crates/ferroloop-py/src/sockops.rs).

    async def sock_recv(self, sock, n):
        r = self._sock_op_recv(sock, n)
        if type(r) is _Future:
            try:
                return await r
            finally:
                del r  # see _sock_wait_note
        return r

    async def sock_recv_into(self, sock, buf):
        r = self._sock_op_recv_into(sock, buf)
        if type(r) is _Future:
            try:
                return await r
            finally:
                del r  # see _sock_wait_note
        return r

    async def sock_sendall(self, sock, data):
        r = self._sock_op_sendall(sock, data)
        if type(r) is _Future:
            try:
                return await r
            finally:
                del r  # see _sock_wait_note
        return r

    async def sock_recvfrom(self, sock, bufsize):
        r = self._sock_op_recvfrom(sock, bufsize)
        if type(r) is _Future:
            try:
                return await r
            finally:
                del r  # see _sock_wait_note
        return r

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        self._check_sock(sock)
        if not nbytes:
            nbytes = len(buf)
        r = self._sock_op_recvfrom_into(sock, buf, nbytes)
        if type(r) is _Future:
            try:
                return await r
            finally:
                del r  # see _sock_wait_note
        return r

    async def sock_sendto(self, sock, data, address):
        r = self._sock_op_sendto(sock, data, address)
        if type(r) is _Future:
            try:
                return await r
            finally:
                del r  # see _sock_wait_note
        return r

    async def sock_connect(self, sock, address):
        self._check_sock(sock)  # before resolving, as asyncio
        if sock.family == socket.AF_INET or (base_events._HAS_IPv6 and sock.family == socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto, loop=self,
            )
            address = resolved[0][4]
        r = self._sock_op_connect(sock, address)
        if type(r) is _Future:
            try:
                return await r
            finally:
                del r  # see _sock_wait_note
        return r

    async def sock_accept(self, sock):
        r = self._sock_op_accept(sock)
        if type(r) is _Future:
            fut = r
            try:
                r = await fut
            finally:
                del fut  # see _sock_wait_note
        conn, address = r
        return conn, address

    # --- socket transports -----------------------------------------------------

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        return self._socket_transport_class(sock)(self, sock, protocol, waiter, extra, server)

    @staticmethod
    def _socket_transport_class(sock):
        # The native transport does its I/O on the descriptor itself; a
        # socket-like stand-in (a mock, a wrapper) gets asyncio's transport,
        # which goes through the object's methods. (type(), not isinstance:
        # a mock with spec=socket passes isinstance.)
        if issubclass(type(sock), socket.socket):
            return SocketTransport
        return selector_events._SelectorSocketTransport

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        if issubclass(type(sock), socket.socket):
            return DatagramTransport(self, sock, protocol, address, waiter, extra)
        # A socket-like stand-in (a mock): asyncio's transport, as above.
        return selector_events._SelectorDatagramTransport(self, sock, protocol, address, waiter, extra)

    def _make_ssl_transport(
        self, rawsock, protocol, sslcontext, waiter=None, *, server_side=False,
        server_hostname=None, extra=None, server=None,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
    ):
        ssl_protocol = _SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        transport = self._socket_transport_class(rawsock)(self, rawsock, ssl_protocol, extra=extra, server=server)
        core = getattr(transport, "_core", None)
        if core is not None:
            ssl_protocol._creation_context = core._context
        return ssl_protocol._app_transport

    async def start_tls(self, transport, protocol, sslcontext, *, server_side=False,
                        server_hostname=None, ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        """asyncio's start_tls (same checks, order and failure handling),
        with ferroloop's SSLProtocol: the native per-record path, and the
        application callbacks in the upgraded transport's context."""
        if ssl is None:
            raise RuntimeError("Python ssl module is not available")
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(
                f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}"
            )
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        done = self.create_future()
        tls = _SSLProtocol(
            self, protocol, sslcontext, done, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=False,
        )
        core = getattr(transport, "_core", None)
        if core is not None:
            tls._creation_context = core._context
        # Reading stays paused until the TLS protocol has been told about
        # its transport, so no record reaches it before connection_made().
        transport.pause_reading()
        transport.set_protocol(tls)
        scheduled = (
            self.call_soon(tls.connection_made, transport),
            self.call_soon(transport.resume_reading),
        )
        try:
            await done
        except BaseException:
            transport.close()
            for handle in scheduled:
                handle.cancel()
            raise
        return tls._app_transport

    # --- metrics (sched/metrics.rs, _metrics.py) ----------------------------

    def metrics(self):
        """A frozen snapshot of this loop's counters (``LoopMetrics``)."""
        return _metrics.LoopMetrics._from_snapshot(self._metrics_snapshot())

    def reset_metrics(self):
        """Start counting again from zero (``since`` becomes now)."""
        self._reset_metrics()

    def set_metrics(self, *, callback_timing):
        """Switch per-callback timing on or off (durations histogram and
        longest callback; always on in debug mode). Costs two clock reads
        per callback."""
        self._set_callback_timing(bool(callback_timing))

    def _describe_callback(self, subject):
        # The longest callback's text for metrics(): asyncio's rendering of
        # the subject, plus where a task's await chain stood.
        text = str(subject)
        report = _metrics.describe_slow_callback(subject)
        if report is not None and report.stack and not report.finished:
            text += f" in {report.where}"
        return text

    def set_watchdog(self, seconds):
        """Report, with the loop thread's stack, any callback still running
        after ``seconds`` (None or 0: off, the default). A thread watches
        while the loop runs; see docs/observability.md."""
        if seconds is not None:
            seconds = float(seconds)
        self._set_watchdog(seconds)

    def get_watchdog(self):
        """The watchdog's threshold in seconds, or None when it is off."""
        return self._watchdog

    def _watchdog_report(self, seconds):
        # Called on the watchdog thread, which holds the GIL while the loop
        # thread is stopped at a switch point inside the overrunning job (so
        # no native borrow is held): read its frames, log, return.
        frame = sys._current_frames().get(self._thread_id)
        task = asyncio.tasks._current_tasks.get(self) if frame is not None else None
        stack = "".join(traceback.format_stack(frame, limit=_WATCHDOG_STACK_LIMIT)) if frame is not None else ""
        what = "a callback" if task is None else repr(task)
        _slow_logger.warning(
            "watchdog: %s has been running for %.3f seconds; loop thread stack (most recent call last):\n%s",
            what, seconds, stack.rstrip("\n"),
            extra={"ferroloop_watchdog": {"seconds": seconds, "task": task, "stack": stack}},
        )

    def _log_slow_callback(self, subject, seconds):
        # asyncio's logger, looked up at call time (tests patch it); the
        # subject is formatted after the callback ran, as asyncio does. The
        # record's text stays asyncio's exactly (tools and asyncio's own
        # tests match it up to the end of the line); what a slow task was
        # doing goes in its `extra` and in a second record right after.
        report = _metrics.describe_slow_callback(subject)
        extra = None if report is None else {"ferroloop_slow_callback": report}
        base_events.logger.warning("Executing %s took %.3f seconds", subject, seconds, extra=extra)
        if report is not None:
            _slow_logger.warning("slow callback: %s", report.text(), extra=extra)

    def _timer_handle_cancelled(self, handle):
        # Handles created by this loop report cancellation natively; this
        # exists for code that calls it on asyncio handles it made itself.
        pass


def _install_borrowed(cls):
    # Installed after the class body so that a method the class defines
    # itself is never replaced silently: a name on both sides is a mistake
    # (tests/test_borrowed.py checks what is installed is asyncio's own).
    own = set(vars(cls))
    for source, names in (
        (_BaseEventLoop, _BORROWED_BASE),
        (selector_events.BaseSelectorEventLoop, _BORROWED_SELECTOR),
        (unix_events._UnixSelectorEventLoop, _BORROWED_UNIX),
    ):
        for name in names:
            if name in own:
                raise TypeError(f"{cls.__name__}.{name} is both defined and borrowed")
            setattr(cls, name, getattr(source, name))


_install_borrowed(Loop)


def _adopt_asyncio_qualnames(cls):
    # Python words a call's TypeError (missing or unexpected arguments) and
    # names a coroutine after the function's __qualname__; taking asyncio's
    # (``BaseEventLoop.set_debug``, ``BaseSelectorEventLoop.sock_recv``...)
    # makes both read as they do on asyncio.
    reference = unix_events._UnixSelectorEventLoop.__mro__
    for name, func in list(vars(cls).items()):
        if not isinstance(func, types.FunctionType) or func.__module__ != __name__:
            continue
        for base in reference:
            theirs = vars(base).get(name)
            if isinstance(theirs, types.FunctionType):
                func.__qualname__ = theirs.__qualname__
                break


_adopt_asyncio_qualnames(Loop)


def _run_unless_cancelled(handle):
    if not handle._cancelled:
        handle._run()


class _AllTasksView:
    """Stands in for ``asyncio.tasks._all_tasks`` (the WeakSet that
    ``asyncio.all_tasks()`` lists): yields its tasks and then ferroloop's
    natively registered ones. add/discard go to the WeakSet."""

    __slots__ = ("_weakset",)

    def __init__(self, weakset):
        self._weakset = weakset

    def __iter__(self):
        yield from self._weakset
        yield from _ferroloop._live_tasks()

    def __len__(self):
        return len(self._weakset) + len(_ferroloop._live_tasks())

    def __contains__(self, task):
        return task in self._weakset or any(t is task for t in _ferroloop._live_tasks())

    def add(self, task):
        self._weakset.add(task)

    def discard(self, task):
        self._weakset.discard(task)


# The module-level WeakSet of asyncio.tasks that all_tasks() lists, per
# version (3.12 renamed it when eager tasks got a set of their own). From
# 3.14 on, all_tasks() is C code reading per-thread lists: no registry there,
# tasks register in asyncio's own structures (docs/DIFFERENCES.md).
_ALL_TASKS_SET = {(3, 11): "_all_tasks", (3, 12): "_scheduled_tasks", (3, 13): "_scheduled_tasks"}


def _install_task_registry():
    from asyncio import tasks

    name = _ALL_TASKS_SET.get(sys.version_info[:2])
    if name is None:
        return
    # Present on every version listed: tests/test_asyncio_private_api.py.
    current = getattr(tasks, name)
    if not isinstance(current, _AllTasksView):
        setattr(tasks, name, _AllTasksView(current))
    _ferroloop._enable_task_registry()


_install_task_registry()


def new_event_loop():
    """Return a new ferroloop event loop."""
    return Loop()
