import CLibvirt
import FenceCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import Synchronization

/// Something that happened on a connection, in the order libvirt reported it.
public enum LibvirtEvent: Hashable, Sendable {
    /// A connection was (re)opened; anything cached about the hypervisor should be re-read.
    case connected(generation: UInt64)
    /// libvirt reported the connection closed (remote URIs only); the next call reopens it.
    case disconnected(generation: UInt64, reason: Int32)
    /// A domain lifecycle event (`virDomainEventType` and its detail).
    case lifecycle(name: String, uuid: String, event: LifecycleEvent, detail: Int32)
}

/// libvirt's `virDomainEventType`.
public enum LifecycleEvent: Int32, Hashable, Sendable {
    case defined = 0, undefined, started, suspended, resumed, stopped, shutdown, pmSuspended, crashed
    case unknown = -1
}

/// One libvirt connection for the life of its owner: opened on first use, reopened with
/// exponential backoff after it is lost, and closed when the owner goes away. Every call runs on a
/// dedicated thread with a deadline.
///
/// One owner per URI matters beyond efficiency: libvirt's test driver keeps a private copy of a
/// host XML per connection, and `test:///default` inside libvirtd lives only while a connection
/// stays open.
public final class LibvirtConnection: Sendable {
    public let uri: String
    /// Connection and (when subscribed) lifecycle events. Single consumer.
    public let events: AsyncStream<LibvirtEvent>

    private struct State: Sendable {
        var handle: ConnectionHandle?
        var closedByLibvirt = false
        var generation: UInt64 = 0
        var consecutiveFailures = 0
        var nextAttempt: ContinuousClock.Instant?
    }

    private let state = Mutex(State())
    /// Serialises opening, which blocks; held only where blocking calls run (the pool, a request's
    /// own thread), never by event callbacks, and not taken at all while a connection is open.
    private let opening = Mutex(())
    private let eventSink: AsyncStream<LibvirtEvent>.Continuation
    private let subscribeToLifecycle: Bool
    private let backoff: ClosedRange<Duration>
    private let calls: BlockingCalls
    private let reuseWindow: Duration
    private let logger: Logger

    /// - Parameters:
    ///   - lifecycleEvents: register for domain lifecycle events on every (re)connect.
    ///   - backoff: the first and the longest wait between failed opening attempts.
    public convenience init(
        uri: String,
        lifecycleEvents: Bool = false,
        backoff: ClosedRange<Duration> = .milliseconds(250)...(.seconds(30)),
        logger: Logger
    ) {
        self.init(uri: uri, lifecycleEvents: lifecycleEvents, backoff: backoff, calls: .shared, logger: logger)
    }

    /// With its own threads for the blocking calls (tests that fill them up), and how long a
    /// lookup's handle is reused (`ConnectionHandle.recentDomain`; tests).
    init(
        uri: String, lifecycleEvents: Bool, backoff: ClosedRange<Duration>, calls: BlockingCalls,
        reuseWindow: Duration = .seconds(1), logger: Logger
    ) {
        self.uri = uri
        self.reuseWindow = reuseWindow
        self.subscribeToLifecycle = lifecycleEvents
        self.backoff = backoff
        self.calls = calls
        self.logger = logger
        (events, eventSink) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(65_536))
    }

    deinit {
        eventSink.finish()
    }

    /// Lookups the open connection has made (tests).
    var lookupsMade: Int { state.withLock { $0.handle?.lookups.load(ordering: .relaxed) ?? 0 } }

    /// Opens the connection now if it is not open (a start-up check); the same as any call would.
    public func open(deadline: ContinuousClock.Instant) async throws(LibvirtError) {
        try await withConnection("virConnectOpen", deadline: deadline) { _ throws(LibvirtError) in }
    }

    /// Every domain, active and inactive, with its state: two calls of `virConnectGetAllDomainStats`
    /// (persistent domains, then transient ones), without waiting on domains that are busy. Each
    /// domain is visited once, and a remote libvirtd is asked twice rather than several times per
    /// domain.
    public func listDomains(deadline: ContinuousClock.Instant) async throws(LibvirtError) -> [DomainInfo] {
        try await withConnection("list domains", deadline: deadline) { connection throws(LibvirtError) in
            var result: [DomainInfo] = []
            for persistent in [true, false] {
                let filter = persistent ? VIR_CONNECT_GET_ALL_DOMAINS_STATS_PERSISTENT.rawValue : VIR_CONNECT_GET_ALL_DOMAINS_STATS_TRANSIENT.rawValue
                var records: UnsafeMutablePointer<virDomainStatsRecordPtr?>?
                let count = try Self.check(
                    virConnectGetAllDomainStats(connection.pointer, VIR_DOMAIN_STATS_STATE.rawValue, &records, filter | VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT.rawValue),
                    "virConnectGetAllDomainStats"
                )
                guard let records else { continue }
                defer { virDomainStatsRecordListFree(records) }
                result.reserveCapacity(result.count + Int(count))
                for index in 0..<Int(count) {
                    guard let record = records[index]?.pointee, let domain = record.dom else { continue }
                    let state = if let reported = Self.stateParameter(record) { reported } else { try Self.state(of: domain) }
                    result.append(DomainInfo(name: try Self.name(of: domain), uuid: try Self.uuid(of: domain), state: state, persistent: persistent))
                }
            }
            return result
        }
    }

    /// Nil when libvirt says there is no such domain. Two round trips to libvirtd (the lookup, the
    /// state), as the reference's; a third with `persistence`, for an inventory's reading (fencing
    /// asks `isPersistent` when it needs to know). The calls that follow it on the domain within
    /// a second reuse its handle (`ConnectionHandle.recentDomain`) rather than look it up again.
    public func lookup(_ target: DomainTarget, persistence: Bool = false, deadline: ContinuousClock.Instant) async throws(LibvirtError) -> DomainInfo? {
        try await withConnection("lookup \(target)", deadline: deadline) { connection throws(LibvirtError) in
            try Self.nilIfGone { () throws(LibvirtError) in
                let domain = try Self.lookup(target, in: connection)
                let info = DomainInfo(
                    name: try Self.name(of: domain.pointer),
                    uuid: try Self.uuid(of: domain.pointer),
                    state: try Self.state(of: domain.pointer),
                    persistent: persistence ? try Self.check(virDomainIsPersistent(domain.pointer), "virDomainIsPersistent") == 1 : nil
                )
                connection.remember(domain, uuid: info.uuid)
                return info
            }
        }
    }

    /// `virDomainIsPersistent`.
    public func isPersistent(uuid: String, deadline: ContinuousClock.Instant) async throws(LibvirtError) -> Bool {
        try await withConnection("virDomainIsPersistent", deadline: deadline) { connection throws(LibvirtError) in
            let domain = try Self.domain(uuid, in: connection)
            return try Self.check(virDomainIsPersistent(domain.pointer), "virDomainIsPersistent") == 1
        }
    }

    /// Destroys the domain and reads its state with the same handle, in one call on the blocking
    /// pool (two round trips to a remote libvirtd after the lookup, which a lookup just before
    /// spares); nil when it is gone after.
    @discardableResult
    public func destroy(uuid: String, deadline: ContinuousClock.Instant) async throws(LibvirtError) -> DomainState? {
        try await withConnection("virDomainDestroy", deadline: deadline) { connection throws(LibvirtError) in
            let domain = try Self.domain(uuid, in: connection)
            try Self.check(virDomainDestroy(domain.pointer), "virDomainDestroy")
            return try Self.nilIfGone { () throws(LibvirtError) in try Self.state(of: domain.pointer) }
        }
    }

    /// Starts a defined domain (`virDomainCreate`).
    public func start(uuid: String, deadline: ContinuousClock.Instant) async throws(LibvirtError) {
        try await withConnection("virDomainCreate", deadline: deadline) { connection throws(LibvirtError) in
            let domain = try Self.domain(uuid, in: connection)
            try Self.check(virDomainCreate(domain.pointer), "virDomainCreate")
        }
    }

    public func suspend(uuid: String, deadline: ContinuousClock.Instant) async throws(LibvirtError) {
        try await withConnection("virDomainSuspend", deadline: deadline) { connection throws(LibvirtError) in
            let domain = try Self.domain(uuid, in: connection)
            try Self.check(virDomainSuspend(domain.pointer), "virDomainSuspend")
        }
    }

    public func xmlDescription(uuid: String, deadline: ContinuousClock.Instant) async throws(LibvirtError) -> String {
        try await withConnection("virDomainGetXMLDesc", deadline: deadline) { connection throws(LibvirtError) in
            let domain = try Self.domain(uuid, in: connection)
            guard let xml = virDomainGetXMLDesc(domain.pointer, 0) else { throw LibvirtError.last("virDomainGetXMLDesc") }
            defer { free(xml) }
            return String(cString: xml)
        }
    }

    /// Creates and starts a transient domain (`virDomainCreateXML`).
    public func startTransient(xml: String, deadline: ContinuousClock.Instant) async throws(LibvirtError) {
        try await withConnection("virDomainCreateXML", deadline: deadline) { connection throws(LibvirtError) in
            guard let domain = virDomainCreateXML(connection.pointer, xml, 0) else { throw LibvirtError.last("virDomainCreateXML") }
            virDomainFree(domain)
        }
    }

    /// Defines a persistent domain (`virDomainDefineXML`) and returns its UUID.
    public func define(xml: String, deadline: ContinuousClock.Instant) async throws(LibvirtError) -> String {
        try await withConnection("virDomainDefineXML", deadline: deadline) { connection throws(LibvirtError) in
            guard let pointer = virDomainDefineXML(connection.pointer, xml) else { throw LibvirtError.last("virDomainDefineXML") }
            let domain = DomainHandle(pointer)
            return try Self.uuid(of: domain.pointer)
        }
    }

    /// One round trip that proves the hypervisor answers.
    public func ping(deadline: ContinuousClock.Instant) async throws(LibvirtError) {
        try await withConnection("virConnectNumOfDomains", deadline: deadline) { connection throws(LibvirtError) in
            _ = try Self.check(virConnectNumOfDomains(connection.pointer), "virConnectNumOfDomains")
        }
    }

    // MARK: - Connection management (runs on pool threads)

    private func withConnection<T: Sendable>(
        _ operation: String,
        deadline: ContinuousClock.Instant,
        _ body: @escaping @Sendable (ConnectionHandle) throws(LibvirtError) -> T
    ) async throws(LibvirtError) -> T {
        try await calls.run(operation, deadline: deadline) { () throws(LibvirtError) -> T in
            let handle = try self.connectedHandle()
            do throws(LibvirtError) {
                return try body(handle)
            } catch {
                guard error.code != .noDomain, virConnectIsAlive(handle.pointer) != 1 else { throw error }
                self.discard(handle)
                throw LibvirtError(code: .connectionLost, operation: error.operation, libvirtCode: error.libvirtCode, message: error.message)
            }
        }
    }

    private func connectedHandle() throws(LibvirtError) -> ConnectionHandle {
        // The usual case: open, and no call waits behind one that is opening (and may hang).
        if let open = state.withLock({ $0.closedByLibvirt ? nil : $0.handle }) { return open }
        return try opening.withLock { _ throws(LibvirtError) -> ConnectionHandle in
            let (current, closed, nextAttempt) = state.withLock { ($0.handle, $0.closedByLibvirt, $0.nextAttempt) }
            if let current {
                guard closed else { return current }
                discard(current)
            }
            if let nextAttempt, ContinuousClock.now < nextAttempt {
                throw LibvirtError(code: .connectionFailed, operation: "virConnectOpen",
                                   message: "\(uri) is unreachable; next attempt in \(nextAttempt - .now)")
            }
            return try openConnection()
        }
    }

    private func openConnection() throws(LibvirtError) -> ConnectionHandle {
        let eventLoop = LibvirtRuntime.prepare(eventLoop: subscribeToLifecycle)
        guard eventLoop || !subscribeToLifecycle else {
            throw LibvirtError(code: .connectionFailed, operation: "virEventRegisterDefaultImpl", message: "libvirt's event loop could not be started")
        }
        guard let pointer = virConnectOpen(uri) else {
            let error = LibvirtError.last("virConnectOpen")
            let delay = backOff()
            logger.warning("cannot connect to libvirt", metadata: ["uri": "\(uri)", "error": "\(error.message)", "retry-in": "\(delay)"])
            throw LibvirtError(code: .connectionFailed, operation: "virConnectOpen", libvirtCode: error.libvirtCode, message: "\(uri): \(error.message)")
        }
        if eventLoop {
            // Keepalives detect a dead libvirtd; local drivers do not support them, which is fine.
            _ = virConnectSetKeepAlive(pointer, 5, 3)
        }
        let generation = state.withLock { state -> UInt64 in
            state.generation += 1
            return state.generation
        }
        let handle = ConnectionHandle(
            pointer: pointer, generation: generation, owner: self, callbacks: eventLoop, lifecycle: subscribeToLifecycle, reuseWindow: reuseWindow
        )
        if subscribeToLifecycle, !handle.lifecycleRegistered {
            // A connection without events would make every snapshot from it look complete while
            // changes go unreported: not a connection for an inventory. The handle closes here.
            let error = LibvirtError.last("virConnectDomainEventRegisterAny")
            let delay = backOff()
            logger.error("cannot register for libvirt's lifecycle events", metadata: ["uri": "\(uri)", "error": "\(error.message)", "retry-in": "\(delay)"])
            throw LibvirtError(code: .connectionFailed, operation: "virConnectDomainEventRegisterAny", libvirtCode: error.libvirtCode, message: "\(uri): \(error.message)")
        }
        state.withLock { state in
            state.handle = handle
            state.closedByLibvirt = false
            state.consecutiveFailures = 0
            state.nextAttempt = nil
        }
        logger.info("connected to libvirt", metadata: ["uri": "\(uri)", "generation": "\(generation)"])
        eventSink.yield(.connected(generation: generation))
        return handle
    }

    /// Counts a failed opening and returns how long until the next attempt.
    private func backOff() -> Duration {
        state.withLock { state -> Duration in
            state.consecutiveFailures += 1
            let exponent = min(state.consecutiveFailures - 1, 16)
            let delay = min(backoff.lowerBound * (1 << exponent), backoff.upperBound)
            state.nextAttempt = .now + delay
            return delay
        }
    }

    /// Forgets a dead handle; the next call reopens at once.
    private func discard(_ handle: ConnectionHandle) {
        let dropped = state.withLock { state -> Bool in
            guard state.handle === handle else { return false }
            state.handle = nil
            state.closedByLibvirt = false
            state.nextAttempt = nil
            return true
        }
        if dropped { logger.warning("libvirt connection lost", metadata: ["uri": "\(uri)", "generation": "\(handle.generation)"]) }
    }

    // MARK: - Callbacks from libvirt's event thread (must not block)

    fileprivate func connectionClosed(generation: UInt64, reason: Int32) {
        let current = state.withLock { state -> Bool in
            guard state.handle?.generation == generation else { return false }
            state.closedByLibvirt = true
            return true
        }
        if current { eventSink.yield(.disconnected(generation: generation, reason: reason)) }
    }

    fileprivate func lifecycle(name: String, uuid: String, event: Int32, detail: Int32) {
        eventSink.yield(.lifecycle(name: name, uuid: uuid, event: LifecycleEvent(rawValue: event) ?? .unknown, detail: detail))
    }

    // MARK: - Reading domains (pool threads)

    /// What `body` reads, or nil when libvirt says there is no such domain (the only failure that means "not there").
    static func nilIfGone<T>(_ body: () throws(LibvirtError) -> T) throws(LibvirtError) -> T? {
        do {
            return try body()
        } catch {
            guard error.code == .noDomain else { throw error }
            return nil
        }
    }

    @discardableResult
    static func check(_ result: Int32, _ operation: String) throws(LibvirtError) -> Int32 {
        guard result >= 0 else { throw LibvirtError.last(operation) }
        return result
    }

    /// The domain `uuid` names: the handle a lookup on this connection made within the reuse
    /// window (any lookup: a fencing action's under the domain's lock, an inventory reading), or
    /// a new lookup.
    static func domain(_ uuid: String, in connection: ConnectionHandle) throws(LibvirtError) -> DomainHandle {
        if let recent = connection.recentDomain(uuid) { return recent }
        return try lookup(.uuid(uuid), in: connection)
    }

    static func lookup(_ target: DomainTarget, in connection: ConnectionHandle) throws(LibvirtError) -> DomainHandle {
        connection.lookups.add(1, ordering: .relaxed)
        let pointer: OpaquePointer? = switch target {
        case .name(let name): virDomainLookupByName(connection.pointer, name)
        case .uuid(let uuid): virDomainLookupByUUIDString(connection.pointer, uuid)
        }
        guard let pointer else { throw LibvirtError.last("lookup \(target)") }
        return DomainHandle(pointer)
    }

    static func name(of domain: OpaquePointer) throws(LibvirtError) -> String {
        guard let name = virDomainGetName(domain) else { throw LibvirtError.last("virDomainGetName") }
        return String(cString: name)
    }

    /// The UUID as libvirt writes it (36 lowercase hexadecimal characters and dashes), formatted
    /// here: `virDomainGetUUIDString` formats with `snprintf`, a byte at a time.
    static func uuid(of domain: OpaquePointer) throws(LibvirtError) -> String {
        var raw: (UInt64, UInt64) = (0, 0)  // VIR_UUID_BUFLEN (16) bytes
        let result = withUnsafeMutableBytes(of: &raw) { virDomainGetUUID(domain, $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
        try check(result, "virDomainGetUUID")
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(36)
        withUnsafeBytes(of: &raw) { bytes in
            for (index, byte) in bytes.enumerated() {
                if index == 4 || index == 6 || index == 8 || index == 10 { text.append(UInt8(ascii: "-")) }
                text.append(digits[Int(byte >> 4)])
                text.append(digits[Int(byte & 0x0F)])
            }
        }
        return String(decoding: text, as: UTF8.self)
    }

    static func state(of domain: OpaquePointer) throws(LibvirtError) -> DomainState {
        var state: Int32 = 0
        var reason: Int32 = 0
        try check(virDomainGetState(domain, &state, &reason, 0), "virDomainGetState")
        return DomainState(rawValue: UInt8(clamping: state)) ?? .noState
    }

    /// `state.state` of a stats record, if libvirt included it.
    static func stateParameter(_ record: virDomainStatsRecord) -> DomainState? {
        for index in 0..<Int(record.nparams) {
            let parameter = record.params[index]
            let isState = withUnsafeBytes(of: parameter.field) { field in
                field.prefix { $0 != 0 }.elementsEqual("state.state".utf8)
            }
            if isState { return DomainState(rawValue: UInt8(clamping: parameter.value.i)) }
        }
        return nil
    }
}

/// Owns one `virDomainPtr` (libvirt's domain objects are reference counted and may be used
/// from any thread).
final class DomainHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { virDomainFree(pointer) }
}

/// Owns one `virConnectPtr` with its callbacks: registered when it is made, removed before it closes.
final class ConnectionHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    let generation: UInt64
    private let lifecycleCallbackID: Int32
    private let closeCallbackRegistered: Bool
    var lifecycleRegistered: Bool { lifecycleCallbackID >= 0 }

    /// Domains looked up on this connection within `reuseWindow`, by UUID, so that an action
    /// that follows its lookup (an off after the reading under the domain's lock) acts with the
    /// same handle instead of a second lookup, as the reference does. A handle names its domain
    /// by UUID in every call (libvirtd and the hypervisor drivers find the domain by it), so a
    /// reused handle acts on the domain a new lookup would find, and fails the same way
    /// (`.noDomain`) when it is gone. A reconnection makes a new handle, with none remembered.
    private let recent = Mutex<[String: (handle: DomainHandle, at: ContinuousClock.Instant)]>([:])
    let reuseWindow: Duration
    /// Lookups made on this connection (tests).
    let lookups = Atomic<Int>(0)

    func remember(_ domain: DomainHandle, uuid: String) {
        let now = ContinuousClock.now
        recent.withLock { recent in
            if recent.count >= 64 { recent = recent.filter { now - $0.value.at < reuseWindow } }
            if recent.count >= 64 { recent.removeAll() }
            recent[uuid] = (domain, now)
        }
    }

    func recentDomain(_ uuid: String) -> DomainHandle? {
        recent.withLock { recent in
            guard let entry = recent[uuid], ContinuousClock.now - entry.at < reuseWindow else { return nil }
            return entry.handle
        }
    }

    /// - Parameters:
    ///   - callbacks: the event loop runs, so close callbacks can be delivered.
    ///   - lifecycle: register for lifecycle events too.
    init(pointer: OpaquePointer, generation: UInt64, owner: LibvirtConnection, callbacks: Bool, lifecycle: Bool, reuseWindow: Duration) {
        self.pointer = pointer
        self.generation = generation
        self.reuseWindow = reuseWindow
        if callbacks {
            let closeContext = Unmanaged.passRetained(CallbackContext(owner: owner, generation: generation)).toOpaque()
            closeCallbackRegistered = virConnectRegisterCloseCallback(pointer, connectionClosedCallback, closeContext, releaseContext) == 0
            if !closeCallbackRegistered { Unmanaged<CallbackContext>.fromOpaque(closeContext).release() }
        } else {
            closeCallbackRegistered = false
        }
        if callbacks && lifecycle {
            let context = Unmanaged.passRetained(CallbackContext(owner: owner, generation: generation)).toOpaque()
            let callback = unsafeBitCast(lifecycleCallback, to: virConnectDomainEventGenericCallback.self)
            lifecycleCallbackID = virConnectDomainEventRegisterAny(
                pointer, nil, Int32(VIR_DOMAIN_EVENT_ID_LIFECYCLE.rawValue), callback, context, releaseContext
            )
            if lifecycleCallbackID < 0 { Unmanaged<CallbackContext>.fromOpaque(context).release() }
        } else {
            lifecycleCallbackID = -1
        }
    }

    deinit {
        recent.withLock { $0.removeAll() }  // each holds a reference to the connection
        if lifecycleCallbackID >= 0 { _ = virConnectDomainEventDeregisterAny(pointer, lifecycleCallbackID) }
        if closeCallbackRegistered { _ = virConnectUnregisterCloseCallback(pointer, connectionClosedCallback) }
        virConnectClose(pointer)
    }
}

/// What libvirt hands back to our C callbacks; it holds the connection weakly so that a callback
/// arriving during teardown finds nobody rather than a freed object.
private final class CallbackContext: Sendable {
    weak let owner: LibvirtConnection?
    let generation: UInt64

    init(owner: LibvirtConnection, generation: UInt64) {
        self.owner = owner
        self.generation = generation
    }
}

private func releaseContext(_ opaque: UnsafeMutableRawPointer?) {
    guard let opaque else { return }
    Unmanaged<CallbackContext>.fromOpaque(opaque).release()
}

private let connectionClosedCallback: @convention(c) (OpaquePointer?, Int32, UnsafeMutableRawPointer?) -> Void = { _, reason, opaque in
    guard let opaque else { return }
    let context = Unmanaged<CallbackContext>.fromOpaque(opaque).takeUnretainedValue()
    context.owner?.connectionClosed(generation: context.generation, reason: reason)
}

private let lifecycleCallback: @convention(c) (OpaquePointer?, OpaquePointer?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = { _, domain, event, detail, opaque in
    guard let opaque, let domain else { return 0 }
    let context = Unmanaged<CallbackContext>.fromOpaque(opaque).takeUnretainedValue()
    let name = (try? LibvirtConnection.name(of: domain)) ?? ""
    let uuid = (try? LibvirtConnection.uuid(of: domain)) ?? ""
    context.owner?.lifecycle(name: name, uuid: uuid, event: event, detail: detail)
    return 0
}
