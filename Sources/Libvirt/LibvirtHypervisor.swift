import FenceCore

/// The fencing rules' view of a libvirt connection: libvirt errors become fence failures, and
/// "no such domain" is the only one that means "not there".
public struct LibvirtHypervisor: Hypervisor {
    public let connection: LibvirtConnection

    public init(connection: LibvirtConnection) {
        self.connection = connection
    }

    public var name: String { connection.uri }

    public func lookup(_ target: DomainTarget, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> DomainInfo? {
        try await mapped { () throws(LibvirtError) in try await connection.lookup(target, deadline: deadline) }
    }

    public func listDomains(deadline: ContinuousClock.Instant) async throws(FenceFailure) -> [DomainInfo] {
        try await mapped { () throws(LibvirtError) in try await connection.listDomains(deadline: deadline) }
    }

    public func destroy(uuid: String, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> DomainState? {
        try await mapped { () throws(LibvirtError) in try await connection.destroy(uuid: uuid, deadline: deadline) }
    }

    public func start(uuid: String, deadline: ContinuousClock.Instant) async throws(FenceFailure) {
        try await mapped { () throws(LibvirtError) in try await connection.start(uuid: uuid, deadline: deadline) }
    }

    public func isPersistent(uuid: String, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> Bool {
        try await mapped { () throws(LibvirtError) in try await connection.isPersistent(uuid: uuid, deadline: deadline) }
    }

    public func definition(uuid: String, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> String {
        try await mapped { () throws(LibvirtError) in try await connection.xmlDescription(uuid: uuid, deadline: deadline) }
    }

    public func startTransient(xml: String, deadline: ContinuousClock.Instant) async throws(FenceFailure) {
        try await mapped { () throws(LibvirtError) in try await connection.startTransient(xml: xml, deadline: deadline) }
    }

    public func ping(deadline: ContinuousClock.Instant) async throws(FenceFailure) {
        try await mapped { () throws(LibvirtError) in try await connection.ping(deadline: deadline) }
    }

    private func mapped<T>(_ call: () async throws(LibvirtError) -> T) async throws(FenceFailure) -> T {
        do {
            return try await call()
        } catch {
            throw error.asFenceFailure
        }
    }
}

extension LibvirtError {
    /// Only `.noDomain` means "not there"; every other failure means "could not find out".
    public var asFenceFailure: FenceFailure {
        let code: FenceFailure.Code = switch self.code {
        case .noDomain: .notFound
        case .connectionFailed, .connectionLost: .hypervisorUnavailable
        case .timedOut: .timedOut
        case .callFailed: .operationFailed
        }
        return FenceFailure(code, description)
    }
}
