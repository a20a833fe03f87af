import Cryptography
import DropReporting
import FenceConfig
import FenceCore
import FenceWire
import Logging
import NIOCore
import RequestThreads
import Synchronization

/// The time limits of the front end.
public struct FrontEndTiming: Sendable {
    /// A request lives this long from its first packet; past it, it is dropped and never executed.
    public var requestTimeout: Duration = .seconds(20)
    /// Copies of an answered request are dropped for this long after its client took the call-back.
    public var duplicateWindow: Duration = .seconds(2)
    /// The reference's call-back connect timeout.
    public var callbackConnectTimeout: Duration = .seconds(5)
    /// The whole challenge-response must be done this soon after the connection (the reference
    /// allows 10 s for each of its steps), and the answer written within as long again.
    public var exchangeTimeout: Duration = .seconds(10)
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
    public let tag: ChallengeTag

    public init(key: FenceKey, security: ListenerSecurity) {
        verifier = RequestVerifier(key: key, minimumHash: security.minimumHash)
        exchange = ChallengeResponse(key: key, algorithm: security.auth)
        tag = ChallengeTag(key: key)
    }

    /// A fresh conversation with our own random challenge.
    func conversation(_ kind: Conversation.Kind) -> Conversation {
        Conversation(kind: kind, exchange: exchange, tag: tag, random: SecureRandom.bytes(ChallengeTag.randomLength))
    }
}

/// A listener's credentials as they are now: replaced whole by a reload, read by every request.
final class CurrentCredentials: Sendable {
    private let current: Mutex<ListenerCredentials>

    init(_ credentials: ListenerCredentials) {
        current = Mutex(credentials)
    }

    var value: ListenerCredentials {
        get { current.withLock { $0 } }
        set { current.withLock { $0 = newValue } }
    }
}

/// A request that passed the checks and owns its history entry.
struct AdmittedRequest: Sendable {
    let request: FenceRequest
    let key: RequestKey
    let admitted: ContinuousClock.Instant
    let deadline: ContinuousClock.Instant
    let matchesSource: Bool
    let listener: String
    let source: String
    let credentials: ListenerCredentials
    let number: UInt32
    let baseLogger: Logger

    /// The request id in the logs: eight hex digits, formatted only when something is logged
    /// (not on the way to the call-back's SYN).
    var id: String {
        let digits = String(number, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// What every line about this request carries.
    var metadata: Logger.Metadata {
        [
            "request": "\(id)", "op": "\(request.operation)", "domain": "\(request.domain)", "seqno": "\(request.seqno)",
            "source": "\(source)", "listener": "\(listener)",
        ]
    }

    /// Logs a line about this request: its metadata goes with the line, built only when the level
    /// is logged (set on a copy of the logger instead, swift-log's stream handler renders it
    /// again at each change, then the line's own).
    func log(_ level: Logger.Level, _ message: @autoclosure () -> Logger.Message, _ extra: @autoclosure () -> Logger.Metadata = [:]) {
        baseLogger.log(level: level, message(), metadata: metadata.merging(extra()) { $1 })
    }
}

/// Turns datagrams and streams into answered requests: decode, verify, drop replays and copies,
/// call back, authenticate, check the access list, run the backend, answer. Requests run
/// concurrently; the backend serialises them per domain.
///
/// A request is called back and executed at most once: an exact repeat of a signed packet is a
/// replay (`ReplayJournal`, across restarts); copies merge in the `RequestHistory`, which also keeps
/// each client endpoint to one request at a time and shares its room fairly between sources.
public final class RequestPipeline: Sendable {
    private let backend: any FenceBackend
    /// The access list and the timing, replaced as a whole by a configuration reload.
    private let adjustable: Mutex<(policy: AccessPolicy, timing: FrontEndTiming)>
    public let statistics: FrontEndStatistics
    public let drops: DropLog<DropReason>
    private let replays: ReplayJournal
    private let logger: Logger
    private let history: Mutex<RequestHistory>
    /// Request ids for the logs: counted from a random start, so that two runs' ids differ
    /// (without a system call for randomness per request).
    private static let requestIDs = Atomic<UInt32>(.random(in: 0...UInt32.max))
    /// The threads that call clients back.
    let threads = RequestThreads()

    public init(
        backend: any FenceBackend,
        policy: AccessPolicy,
        timing: FrontEndTiming,
        limits: HistoryLimits = HistoryLimits(),
        replays: ReplayJournal,
        statistics: FrontEndStatistics,
        drops: DropLog<DropReason>,
        logger: Logger
    ) {
        self.backend = backend
        self.adjustable = Mutex((policy, timing))
        self.statistics = statistics
        self.drops = drops
        self.replays = replays
        self.logger = logger
        var limits = limits
        limits.requestTimeout = timing.requestTimeout
        limits.window = timing.duplicateWindow
        self.history = Mutex(RequestHistory(limits: limits))
    }

    private var policy: AccessPolicy { adjustable.withLock { $0.policy } }
    private var timing: FrontEndTiming { adjustable.withLock { $0.timing } }

    /// A reloaded access list and request deadline, for requests admitted from now on.
    public func update(policy: AccessPolicy, requestTimeout: Duration) {
        adjustable.withLock { settings in
            settings.policy = policy
            settings.timing.requestTimeout = requestTimeout
        }
        history.withLock { history in
            var limits = history.limits
            limits.requestTimeout = requestTimeout
            history.update(limits: limits)
        }
    }

    // MARK: - Datagrams (multicast listener)

    /// The cheap, synchronous part for one datagram that reached the host at `arrival`. Returns
    /// the request only for its first copy (or a retry after a failed call-back); everything else
    /// is dropped and counted here.
    func admit(datagram: [UInt8], source sourceText: String, listener: String, credentials: ListenerCredentials, arrival: ContinuousClock.Instant = .now) -> AdmittedRequest? {
        let checked = decode(datagram, credentials: credentials, source: sourceText, listener: listener) { request in
            guard let address = request.callbackAddress else {
                return (.badFamily, "address family \(request.family) is neither IPv4 (2) nor IPv6 (10)")
            }
            guard address.isUsableForCallback, !address.isLoopback || CallbackAddress(sourceText)?.isLoopback == true else {
                return (.unusableAddress, "call-back address \(address) cannot be reached from \(sourceText)")
            }
            return nil
        }
        guard let request = checked, let address = request.callbackAddress else { return nil }
        let candidate = CallbackCandidate(address: address, port: request.port, matchesSource: address.description == sourceText)
        guard let admitted = admit(request, candidate: candidate, source: sourceText, listener: listener, credentials: credentials, arrival: arrival) else {
            // Seen and dropped (a copy, a conflict, …): journalled now, there is no SYN to go first.
            replays.persist()
            return nil
        }
        return admitted
    }

    /// Decodes one request, checks its form for this listener (`form` says what is wrong, nil
    /// when nothing), verifies its signature, and refuses an exact repeat of one accepted before.
    /// Only a packet whose every field passed is remembered: forgeries cannot push genuine
    /// packets out of the memory.
    private func decode(
        _ bytes: some Collection<UInt8>, credentials: ListenerCredentials, source: String, listener: String,
        form: (FenceRequest) -> (DropReason, String)?
    ) -> FenceRequest? {
        let request: FenceRequest
        do throws(MalformedRequest) {
            request = try FenceRequest(decoding: bytes)
        } catch {
            drop(DropReason(error.code), error.description, source: source, listener: listener)
            return nil
        }
        if let (reason, detail) = form(request) {
            drop(reason, detail, source: source, listener: listener)
            return nil
        }
        do throws(VerificationFailure) {
            try credentials.verifier.verify(request)
        } catch {
            drop(DropReason(error.code), error.description, source: source, listener: listener)
            return nil
        }
        guard replays.firstSighting(of: request) else {
            drop(.replay, "a signed packet accepted before, sent again (op \(request.operation), seqno \(request.seqno))", source: source, listener: listener)
            return nil
        }
        return request
    }

    /// How a datagram request's call-back begins.
    enum CallbackStart {
        /// The request names another address than its source: a copy from the source may come.
        case afterSourceMatchWait
        /// The candidates, the first already being dialled (its SYN has left, or dialling failed).
        case dialling([CallbackCandidate], first: Result<CallbackSession, SessionError>?)
        /// Dropped (and counted) here: nothing to call back.
        case none
    }

    /// Calls back an admitted datagram request and serves it on the first candidate that proves
    /// it holds the key: from any executor. A request that names another address than its
    /// source first waits for a copy from the source; the call-back runs on a request thread of
    /// its own (`RequestThreads`), whose socket it drives with blocking waits.
    func serveDatagram(_ admitted: AdmittedRequest, start: CallbackStart? = nil) async {
        var start = start ?? startCallBack(admitted)
        if case .afterSourceMatchWait = start {
            try? await Task.sleep(for: timing.sourceMatchWait)
            start = candidates(for: admitted)
        }
        guard case .dialling(let candidates, let first) = start else { return }
        guard let thread = threads.take() else {
            history.withLock { $0.callbackFailed(admitted.key, now: .now) }
            drop(.callbacksBusy, "the system refuses a thread for the call-back; a later copy may try again", source: admitted.source, listener: admitted.listener)
            return
        }
        await withTaskExecutorPreference(thread) {
            await thread.hosting { await callBack(admitted, candidates: candidates, first: first) }
        }
        threads.giveBack(thread)
    }

    /// The synchronous start of a call-back, for the thread that received the request: the first
    /// candidate is dialled at once, so that its SYN leaves before anything else is done for the
    /// request, and the rest overlaps with the client's accepting it.
    func startCallBack(_ admitted: AdmittedRequest) -> CallbackStart {
        // The packet goes into the journal once its SYN has left (or nothing is dialled), before
        // anything else is done for it; `converse` makes sure of it again before the request runs.
        defer { replays.persist() }
        if !admitted.matchesSource, admitted.request.callbackAddress?.family == .ipv4,
           !history.withLock({ $0.hasSourceMatch(admitted.key) }) {
            return .afterSourceMatchWait
        }
        return candidates(for: admitted)
    }

    private func candidates(for admitted: AdmittedRequest) -> CallbackStart {
        switch history.withLock({ $0.beginCallback(admitted.key, now: .now) }) {
        case .candidates(let list):
            return .dialling(list, first: list.first.map { candidate in Result { () throws(SessionError) in try dial(candidate, for: admitted) } })
        case .busy:
            drop(.callbacksBusy, "too many call-backs under way; a later copy may try again", source: admitted.source, listener: admitted.listener)
            return .none
        case .refused:
            return .none
        }
    }

    private func dial(_ candidate: CallbackCandidate, for admitted: AdmittedRequest) throws(SessionError) -> CallbackSession {
        try CallbackSession(dialling: candidate.endpoint, credentials: admitted.credentials)
    }

    /// The call-back itself, on the request thread the caller runs on (`startCallBack` gave the
    /// candidates and dialled the first).
    func callBack(_ admitted: AdmittedRequest, candidates: [CallbackCandidate], first: consuming Result<CallbackSession, SessionError>?) async {
        let timing = self.timing
        for candidate in candidates {
            let dialled = first.take()
            let remaining = admitted.deadline - .now
            // Refused meanwhile (another request named this client's endpoint): stop dialling.
            guard remaining > .zero, history.withLock({ $0.mayExecute(admitted.key) }) else { break }
            let session: CallbackSession
            do throws(SessionError) {
                if let dialled {
                    session = try dialled.get()
                } else {
                    session = try dial(candidate, for: admitted)
                }
                try session.connected(until: .now + min(timing.callbackConnectTimeout, remaining))
            } catch {
                admitted.log(.debug, "call-back failed", ["callback": "\(candidate.endpoint)", "error": "\(error)"])
                continue
            }
            let (ending, authenticated) = await converse(admitted, requester: candidate.address.description, session: session, since: .now)
            session.close()
            if case .notAuthenticated(let error) = ending {
                drop(error.refusal.map(DropReason.init) ?? .authenticationFailed, "call-back \(candidate.endpoint): \(error); trying the next address", source: admitted.source, listener: admitted.listener)
                continue
            }
            // The client sent its last copy before it took this call-back, and its challenge
            // proves it took it: copies are judged from there, not from the answer (a slow off, a
            // thread descheduled before this line). Without authentication nothing proves it but
            // the answer.
            let tookCallBack = admitted.credentials.exchange.algorithm == .none ? nil : authenticated
            history.withLock { $0.finished(admitted.key, clientTook: tookCallBack ?? .now) }
            report(ending, admitted: admitted, requester: candidate.address.description, started: admitted.admitted)
            return
        }
        history.withLock { $0.callbackFailed(admitted.key, now: .now) }
        drop(.callbackFailed, "no call-back to \(candidates.map(\.endpoint.description)) reached an authenticated client", source: admitted.source, listener: admitted.listener)
    }

    // MARK: - Streams (tcp listener)

    /// Serves one `fence_virt -T` connection: the request arrives on the stream, the exchange and
    /// the answer follow on it. The channel carries a `ConversationHandler` for a stream, made
    /// with the listener's credentials of that moment; they check the request too.
    func serveStream(_ channel: any Channel, listener: String) async {
        let peer = channel.remoteAddress?.ipAddress ?? "?"
        let started = ContinuousClock.now
        let timing = self.timing
        guard let session = try? await StreamSession.open(channel) else {
            channel.close(promise: nil)
            return
        }
        defer { session.close() }
        let credentials = session.credentials
        let bytes: [UInt8]
        do {
            guard case .request(let received) = try await session.next(until: started + timing.streamRequestTimeout) else { return }
            bytes = received
        } catch {
            drop(error.refusal.map(DropReason.init) ?? .incompleteRequest, "\(error)", source: peer, listener: listener)
            return
        }
        let checked = decode(bytes, credentials: credentials, source: peer, listener: listener) { request in
            request.isStreamRequest ? nil : (.notAStreamRequest, "a stream request names no call-back; this one names \(request.callbackAddress?.description ?? "family \(request.family)") port \(request.port)")
        }
        let admission = checked.flatMap { admit($0, candidate: nil, source: peer, listener: listener, credentials: credentials, arrival: .now) }
        // Journalled before the stream's challenge is answered, admitted or not.
        replays.persist()
        guard let admitted = admission else { return }
        guard case .candidates = history.withLock({ $0.beginCallback(admitted.key, now: .now) }) else {
            drop(.callbacksBusy, "too many requests under way", source: peer, listener: listener)
            return
        }
        session.requestAccepted()
        let (ending, _) = await converse(admitted, requester: peer, session: session, since: started)
        if case .notAuthenticated(let error) = ending {
            history.withLock { $0.callbackFailed(admitted.key, now: .now) }
            drop(error.refusal.map(DropReason.init) ?? .authenticationFailed, "client did not authenticate: \(error)", source: peer, listener: listener)
            return
        }
        history.withLock { $0.finished(admitted.key, clientTook: started) }
        report(ending, admitted: admitted, requester: peer, started: started)
    }

    // MARK: - Shared steps

    private func admit(
        _ request: FenceRequest, candidate: CallbackCandidate?, source: String, listener: String, credentials: ListenerCredentials,
        arrival: ContinuousClock.Instant
    ) -> AdmittedRequest? {
        let key = RequestKey(request)
        let admission = history.withLock { $0.admit(key, candidate: candidate, source: source, now: arrival) }
        let deadline: ContinuousClock.Instant
        switch admission {
        case .new(let until), .retry(let until):
            deadline = until
        case .merged, .duplicate:
            drop(.duplicate, "request \(key)", source: source, listener: listener)
            return nil
        case .retryLimited:
            drop(.retryLimited, "request \(key) was called back too recently or too often", source: source, listener: listener)
            return nil
        case .expired:
            drop(.expired, "request \(key) is past its deadline", source: source, listener: listener)
            return nil
        case .conflict:
            drop(.conflict, "request \(key) names call-back \(candidate.map(\.endpoint.description) ?? "?"), which another request named too: both refused", source: source, listener: listener)
            return nil
        case .overQuota:
            drop(.sourceQuota, "\(source) holds its share of the request history", source: source, listener: listener)
            return nil
        case .full:
            drop(.historyFull, "every request remembered is under way", source: source, listener: listener)
            return nil
        }
        return AdmittedRequest(
            request: request, key: key, admitted: .now, deadline: deadline, matchesSource: candidate?.matchesSource ?? true,
            listener: listener, source: source, credentials: credentials,
            number: Self.requestIDs.add(1, ordering: .relaxed).newValue, baseLogger: logger
        )
    }

    enum Ending {
        case notAuthenticated(SessionError)
        /// Authenticated, then gone or broke the protocol before the request ran: nothing done.
        case clientGone(SessionError)
        /// Refused before it ran: the deadline passed, or another request named its endpoint.
        case notRun(RequestOutcome)
        case answered(RequestOutcome)
        case undelivered(RequestOutcome, SessionError)
    }

    /// Authenticates the client, then (once only) executes and answers; also says when the
    /// client had authenticated (nil if it did not).
    private func converse(
        _ admitted: AdmittedRequest, requester: String, session: some ClientStream, since: ContinuousClock.Instant
    ) async -> (Ending, authenticated: ContinuousClock.Instant?) {
        do {
            guard case .authenticated = try await session.next(until: min(admitted.deadline, since + timing.exchangeTimeout)) else {
                return (.notAuthenticated(SessionError(code: .refused, detail: "a second request on one stream")), nil)
            }
        } catch {
            return (.notAuthenticated(error), nil)
        }
        let authenticated = ContinuousClock.now
        return (await serve(admitted, requester: requester, session: session), authenticated)
    }

    /// The authenticated part of a conversation.
    private func serve(_ admitted: AdmittedRequest, requester: String, session: some ClientStream) async -> Ending {
        let timing = self.timing
        // The last moment to refuse: another request for this client's endpoint came meanwhile
        // (the client cannot tell whose answer it gets), or the request ran out of time.
        guard history.withLock({ $0.mayExecute(admitted.key) }) else { return .notRun(.conflicted) }
        guard ContinuousClock.now < admitted.deadline else { return .notRun(.expired) }
        // A client that is gone, or broke the protocol, would never hear of what was done.
        if let interruption = await session.interruption { return .clientGone(interruption) }
        // Its packet in the journal before it runs: after a restart, a replay is still refused.
        replays.persist()
        let (bytes, outcome) = await execute(admitted, requester: requester)
        if let interruption = await session.interruption {
            if let refusal = interruption.refusal {
                drop(DropReason(refusal), "the client sent data while waiting for its answer; it gets none", source: admitted.source, listener: admitted.listener)
            }
            return .undelivered(outcome, interruption)
        }
        // The deadline bounds the work; its answer (a failure, when the work ran out of time) is
        // still owed to the client, which waits longer than our deadline.
        do {
            try await session.write(bytes, until: .now + timing.exchangeTimeout)
            return .answered(outcome)
        } catch {
            return .undelivered(outcome, error)
        }
    }

    /// Runs the request against the backend; returns the bytes to send and what they mean.
    private func execute(_ admitted: AdmittedRequest, requester: String) async -> ([UInt8], RequestOutcome) {
        let (request, deadline) = (admitted.request, admitted.deadline)
        let action: FenceAction
        switch request.operation {
        case .hostList:
            do {
                let domains = policy.visible(to: requester, try await backend.listDomains(deadline: deadline))
                let records = HostListStream.sorted(domains.map { HostRecord(name: $0.name, uuid: $0.uuid, state: $0.state.rawValue) })
                for record in records where !record.nameFitsOnWire {
                    admitted.log(.warning, "domain name longer than 63 bytes is cut in the host list", ["name": "\(record.name)"])
                }
                return (HostListStream.encode(records), .listed(records.count))
            } catch {
                admitted.log(.error, "cannot list domains", ["error": "\(error)"])
                return ([ResponseCode.failure.rawValue], .done(.failed(error)))
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

    private func answer(_ outcome: FenceOutcome, for admitted: AdmittedRequest) -> ([UInt8], RequestOutcome) {
        let code: ResponseCode = switch outcome {
        case .success: .success
        case .off: .off
        case .failed: .failure
        case .denied: .permissionDenied
        }
        if case .failed(let failure) = outcome {
            admitted.log(.warning, "request failed", ["error": "\(failure)"])
        }
        return ([code.rawValue], .done(outcome))
    }

    private func report(_ ending: Ending, admitted: AdmittedRequest, requester: String, started: ContinuousClock.Instant) {
        var metadata: Logger.Metadata = [
            "requester": "\(requester)",
            "duration-ms": "\((ContinuousClock.now - started).millisecondsText)",
        ]
        let outcome: RequestOutcome
        switch ending {
        case .answered(let answered):
            outcome = answered
            metadata["outcome"] = "\(answered)"
            admitted.log(.info, "request answered", metadata)
        case .undelivered(let answered, let error):
            outcome = answered
            metadata["outcome"] = "\(answered)"
            metadata["error"] = "\(error)"
            admitted.log(.warning, "request carried out but the answer was not delivered", metadata)
        case .notRun(let refused):
            outcome = refused
            metadata["outcome"] = "\(refused)"
            let why = refused == .expired ? "past its deadline after authentication" : "another request named this client's endpoint"
            admitted.log(.warning, "request not executed: \(why)", metadata)
        case .clientGone(let error):
            drop(error.refusal.map(DropReason.init) ?? .clientGone, "the client \(error.refusal == nil ? "went away" : "sent data while waiting") before its request ran; nothing done", source: admitted.source, listener: admitted.listener)
            return
        case .notAuthenticated:
            return
        }
        statistics.answered(operation: admitted.request.operation, outcome: outcome, duration: ContinuousClock.now - started)
    }

    func drop(_ reason: DropReason, _ detail: String, source: String, listener: String) {
        let total = statistics.dropped(reason)
        drops.note(reason, detail: detail, source: source, listener: listener, total: total)
    }
}
