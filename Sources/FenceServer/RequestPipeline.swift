import Cryptography
import FenceConfig
import FenceCore
import FenceWire
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The time limits of the front end.
public struct FrontEndTiming: Sendable {
    /// A request lives this long from its first packet; past it, it is dropped and never executed.
    public var requestTimeout: Duration = .seconds(20)
    /// Copies and retransmissions of a finished request are dropped for this long.
    public var duplicateWindow: Duration = .seconds(60)
    /// The reference's call-back connect timeout.
    public var callbackConnectTimeout: Duration = .seconds(5)
    /// The reference's limit on each read and write of the challenge-response.
    public var exchangeStepTimeout: Duration = .seconds(10)
    /// How long a `fence_virt -T` client has to send its 176 bytes (the reference's 1 s).
    public var streamRequestTimeout: Duration = .seconds(1)
    /// How long an IPv4 copy whose address differs from its UDP source waits for a copy that matches.
    public var sourceMatchWait: Duration = .milliseconds(10)

    public init() {}
}

/// What a listener checks requests with: the key, the weakest signature it accepts, and the
/// challenge-response digest.
public struct ListenerCredentials: Sendable {
    public let verifier: RequestVerifier
    public let exchange: ChallengeResponse

    public init(key: FenceKey, security: ListenerSecurity) {
        verifier = RequestVerifier(key: key, minimumHash: security.minimumHash)
        exchange = ChallengeResponse(key: key, algorithm: security.auth)
    }
}

/// A request that passed the checks and owns its history entry.
struct AdmittedRequest: Sendable {
    let request: FenceRequest
    let key: RequestKey
    let deadline: ContinuousClock.Instant
    let matchesSource: Bool
    let listener: String
    let source: String
    let credentials: ListenerCredentials
    let id: String
    let baseLogger: Logger

    /// The pipeline's logger with this request's metadata, built only when something is logged.
    var logger: Logger {
        var logger = baseLogger
        logger[metadataKey: "request"] = "\(id)"
        logger[metadataKey: "op"] = "\(request.operation)"
        logger[metadataKey: "domain"] = "\(request.domain)"
        logger[metadataKey: "seqno"] = "\(request.seqno)"
        logger[metadataKey: "source"] = "\(source)"
        logger[metadataKey: "listener"] = "\(listener)"
        return logger
    }
}

/// Turns datagrams and streams into answered requests: decode, verify, de-duplicate, call back,
/// authenticate, check the access list, run the backend, answer. Requests run concurrently; the
/// backend serialises them per domain.
public final class RequestPipeline: Sendable {
    private let backend: any FenceBackend
    /// The access list and the timing, replaced as a whole by a configuration reload.
    private let adjustable: Mutex<(policy: AccessPolicy, timing: FrontEndTiming)>
    public let statistics: FrontEndStatistics
    private let logger: Logger
    private let history: Mutex<RequestHistory>

    public init(
        backend: any FenceBackend,
        policy: AccessPolicy,
        timing: FrontEndTiming,
        statistics: FrontEndStatistics,
        logger: Logger
    ) {
        self.backend = backend
        self.adjustable = Mutex((policy, timing))
        self.statistics = statistics
        self.logger = logger
        self.history = Mutex(RequestHistory(window: timing.duplicateWindow))
    }

    private var policy: AccessPolicy { adjustable.withLock { $0.policy } }
    private var timing: FrontEndTiming { adjustable.withLock { $0.timing } }

    /// A reloaded access list and request deadline, for requests admitted from now on.
    public func update(policy: AccessPolicy, requestTimeout: Duration) {
        adjustable.withLock { settings in
            settings.policy = policy
            settings.timing.requestTimeout = requestTimeout
        }
    }

    // MARK: - Datagrams (multicast listener)

    /// The cheap, synchronous part for one datagram. Returns the request only for its first copy
    /// (or a retry after a failed call-back); everything else is dropped, logged and counted here.
    func admit(datagram: ByteBuffer, source: SocketAddress?, listener: String, credentials: ListenerCredentials) -> AdmittedRequest? {
        let sourceText = source?.ipAddress ?? "?"
        let request: FenceRequest
        do {
            request = try FenceRequest(decoding: datagram.readableBytesView)
            try credentials.verifier.verify(request)
        } catch let error as MalformedRequest {
            drop(error.code.rawValue, error.description, source: sourceText, listener: listener)
            return nil
        } catch let error as VerificationFailure {
            drop(error.code.rawValue, error.description, source: sourceText, listener: listener)
            return nil
        } catch {
            drop("invalid", "\(error)", source: sourceText, listener: listener)
            return nil
        }
        guard let address = request.callbackAddress else {
            drop("bad-family", "address family \(request.family) is neither IPv4 (2) nor IPv6 (10)", source: sourceText, listener: listener)
            return nil
        }
        guard address.isUsableForCallback else {
            drop("unusable-address", "call-back address \(address) cannot be reached", source: sourceText, listener: listener)
            return nil
        }
        let candidate = CallbackCandidate(address: address, port: request.port, matchesSource: address.description == sourceText)
        return admit(request, candidate: candidate, source: sourceText, listener: listener, credentials: credentials)
    }

    /// Calls back an admitted datagram request and serves it on the first candidate that proves
    /// it holds the key. The call-back connection is made on `eventLoop` (the one the caller's
    /// task runs on), so its I/O needs no thread hops.
    func serveDatagram(_ admitted: AdmittedRequest, on eventLoop: any EventLoop) async {
        let started = ContinuousClock.now
        if !admitted.matchesSource, admitted.request.callbackAddress?.family == .ipv4,
           !history.withLock({ $0.hasSourceMatch(admitted.key) }) {
            try? await Task.sleep(for: timing.sourceMatchWait)
        }
        let candidates = history.withLock { $0.beginCallback(admitted.key) }
        for candidate in candidates {
            let remaining = admitted.deadline - .now
            guard remaining > .zero else { break }
            let target = "\(candidate.address):\(candidate.port)"
            var session: StreamSession
            do {
                let channel = try await connect(to: candidate, on: eventLoop, timeout: min(timing.callbackConnectTimeout, remaining))
                session = try await StreamSession.open(channel, deadline: admitted.deadline)
            } catch {
                admitted.logger.debug("call-back failed", metadata: ["callback": "\(target)", "error": "\(error)"])
                continue
            }
            let result = await converse(admitted, requester: candidate.address.description, session: &session)
            session.close()
            if case .notAuthenticated(let error) = result {
                admitted.logger.warning("call-back did not authenticate; trying the next address", metadata: ["callback": "\(target)", "error": "\(error)"])
                statistics.dropped("authentication-failed")
                continue
            }
            history.withLock { $0.finished(admitted.key, now: .now) }
            report(result, admitted: admitted, requester: candidate.address.description, started: started)
            return
        }
        history.withLock { $0.callbackFailed(admitted.key, now: .now) }
        let count = statistics.dropped("callback-failed")
        admitted.logger.warning("no call-back reached an authenticated client", metadata: [
            "candidates": "\(candidates.map { "\($0.address):\($0.port)" })", "dropped-total": "\(count)",
        ])
    }

    // MARK: - Streams (tcp listener)

    /// Serves one `fence_virt -T` connection: the request arrives on the stream, the exchange and
    /// the answer follow on it. The channel carries a `ConversationHandler`.
    func serveStream(_ channel: any Channel, listener: String, credentials: ListenerCredentials) async {
        let peer = channel.remoteAddress?.ipAddress ?? "?"
        let started = ContinuousClock.now
        guard var session = try? await StreamSession.open(channel, deadline: .now + timing.requestTimeout) else {
            channel.close(promise: nil)
            return
        }
        defer { session.close() }
        let bytes: [UInt8]
        do {
            bytes = try await session.read(FenceRequest.length, step: timing.streamRequestTimeout)
        } catch {
            drop("incomplete-request", "\(error)", source: peer, listener: listener)
            return
        }
        let request: FenceRequest
        do {
            request = try FenceRequest(decoding: bytes)
            try credentials.verifier.verify(request)
        } catch {
            drop((error as? VerificationFailure)?.code.rawValue ?? (error as? MalformedRequest)?.code.rawValue ?? "invalid", "\(error)", source: peer, listener: listener)
            return
        }
        guard let admitted = admit(request, candidate: nil, source: peer, listener: listener, credentials: credentials) else { return }
        _ = history.withLock { $0.beginCallback(admitted.key) }
        session.deadline = admitted.deadline
        let result = await converse(admitted, requester: peer, session: &session)
        if case .notAuthenticated(let error) = result {
            history.withLock { $0.callbackFailed(admitted.key, now: .now) }
            let count = statistics.dropped("authentication-failed")
            admitted.logger.warning("client did not authenticate", metadata: ["error": "\(error)", "dropped-total": "\(count)"])
            return
        }
        history.withLock { $0.finished(admitted.key, now: .now) }
        report(result, admitted: admitted, requester: peer, started: started)
    }

    // MARK: - Shared steps

    private func admit(_ request: FenceRequest, candidate: CallbackCandidate?, source: String, listener: String, credentials: ListenerCredentials) -> AdmittedRequest? {
        let key = RequestKey(request)
        let now = ContinuousClock.now
        let admission = history.withLock { $0.admit(key, candidate: candidate, now: now) }
        let firstSeen: ContinuousClock.Instant
        switch admission {
        case .new(let first), .retry(let first):
            firstSeen = first
        case .merged, .duplicate:
            let count = statistics.dropped("duplicate")
            logger.debug("dropped packet", metadata: ["reason": "duplicate", "request-key": "\(key)", "source": "\(source)", "dropped-total": "\(count)"])
            return nil
        case .full:
            drop("history-full", "too many requests remembered at once", source: source, listener: listener)
            return nil
        }
        let deadline = firstSeen + timing.requestTimeout
        guard now < deadline else {
            drop("expired", "request \(key) is past its deadline", source: source, listener: listener)
            return nil
        }
        let id = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        return AdmittedRequest(
            request: request, key: key, deadline: deadline, matchesSource: candidate?.matchesSource ?? true,
            listener: listener, source: source, credentials: credentials,
            id: String(repeating: "0", count: 8 - id.count) + id, baseLogger: logger
        )
    }

    enum Conversation {
        case notAuthenticated(SessionError)
        /// The deadline passed before the backend could run: nothing was done, nothing answered.
        case expired
        case answered(outcome: String)
        case undelivered(outcome: String, SessionError)
    }

    /// Authenticates the client, then (once only) executes and answers.
    private func converse(_ admitted: AdmittedRequest, requester: String, session: inout StreamSession) async -> Conversation {
        let exchange = admitted.credentials.exchange
        if exchange.algorithm != .none {
            do {
                let challenge = try await session.read(ChallengeResponse.length, step: timing.exchangeStepTimeout)
                let ours = SecureRandom.bytes(ChallengeResponse.length)
                // Our response, then our challenge: the client reads them in this order, so one write.
                try await session.write(exchange.response(to: challenge) + ours, step: timing.exchangeStepTimeout)
                let response = try await session.read(ChallengeResponse.length, step: timing.exchangeStepTimeout)
                guard exchange.isValid(response: response, to: ours) else {
                    return .notAuthenticated(SessionError(code: .closed, detail: "the client's response to our challenge is wrong"))
                }
            } catch {
                return .notAuthenticated(error)
            }
        }
        guard ContinuousClock.now < admitted.deadline else { return .expired }
        let (bytes, outcome) = await execute(admitted, requester: requester)
        // The deadline bounds the work; its answer (a failure, when the work ran out of time) is
        // still owed to the client, which waits longer than our deadline.
        session.deadline = .now + timing.exchangeStepTimeout
        do {
            try await session.write(bytes, step: timing.exchangeStepTimeout)
            return .answered(outcome: outcome)
        } catch {
            return .undelivered(outcome: outcome, error)
        }
    }

    /// Runs the request against the backend; returns the bytes to send and a word for the logs.
    private func execute(_ admitted: AdmittedRequest, requester: String) async -> ([UInt8], String) {
        let (request, deadline) = (admitted.request, admitted.deadline)
        let action: FenceAction
        switch request.operation {
        case .hostList:
            do {
                let domains = policy.visible(to: requester, try await backend.listDomains(deadline: deadline))
                let records = HostListStream.sorted(domains.map { HostRecord(name: $0.name, uuid: $0.uuid, state: $0.state.rawValue) })
                for record in records where !record.nameFitsOnWire {
                    admitted.logger.warning("domain name longer than 63 bytes is cut in the host list", metadata: ["name": "\(record.name)"])
                }
                return (HostListStream.encode(records), "listed-\(records.count)")
            } catch {
                admitted.logger.error("cannot list domains", metadata: ["error": "\(error)"])
                return ([ResponseCode.failure.rawValue], FenceOutcome.failed(error).description)
            }
        case .deviceStatus:
            return answer(await backend.checkHealth(deadline: deadline), for: admitted)
        case .off: action = .off
        case .on: action = .on
        case .reboot: action = .reboot
        case .status: action = .status
        default:
            // null, metadata, validate-all and unknown codes: the reference's libvirt backend answers failure.
            return answer(.failed(FenceFailure(.unsupported, "operation \(request.operation) is not carried out")), for: admitted)
        }
        guard policy.allows(source: requester, target: request.domain) else {
            return answer(.denied, for: admitted)
        }
        return answer(await backend.perform(action, on: DomainTarget(request.domain), deadline: deadline), for: admitted)
    }

    private func answer(_ outcome: FenceOutcome, for admitted: AdmittedRequest) -> ([UInt8], String) {
        let code: ResponseCode = switch outcome {
        case .success: .success
        case .off: .off
        case .failed: .failure
        case .denied: .permissionDenied
        }
        if case .failed(let failure) = outcome {
            admitted.logger.warning("request failed", metadata: ["error": "\(failure)"])
        }
        return ([code.rawValue], outcome.description)
    }

    private func report(_ result: Conversation, admitted: AdmittedRequest, requester: String, started: ContinuousClock.Instant) {
        var metadata: Logger.Metadata = [
            "requester": "\(requester)",
            "duration-ms": "\((ContinuousClock.now - started).millisecondsText)",
        ]
        let outcome: String
        switch result {
        case .answered(let answered):
            outcome = answered
            metadata["outcome"] = "\(answered)"
            admitted.logger.info("request answered", metadata: metadata)
        case .undelivered(let answered, let error):
            outcome = answered
            metadata["outcome"] = "\(answered)"
            metadata["error"] = "\(error)"
            admitted.logger.warning("request carried out but the answer was not delivered", metadata: metadata)
        case .expired:
            outcome = "expired"
            metadata["outcome"] = "expired"
            admitted.logger.warning("request past its deadline after authentication; not executed", metadata: metadata)
        case .notAuthenticated:
            return
        }
        statistics.answered(operation: admitted.request.operation.description, outcome: outcome, duration: ContinuousClock.now - started)
    }

    private func drop(_ reason: String, _ detail: String, source: String, listener: String) {
        let count = statistics.dropped(reason)
        logger.warning("dropped packet", metadata: [
            "reason": "\(reason)", "detail": "\(detail)", "source": "\(source)", "listener": "\(listener)", "dropped-total": "\(count)",
        ])
    }

    private func connect(to candidate: CallbackCandidate, on eventLoop: any EventLoop, timeout: Duration) async throws -> any Channel {
        let address = try SocketAddress(ipAddress: candidate.address.description, port: Int(candidate.port))
        return try await ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(timeout))
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try StreamSession.prepare(channel) }
            }
            .connect(to: address)
            .get()
    }
}
