/// The few hypervisor operations fencing needs, each bounded by a deadline. libvirt implements it
/// in production and tests; unit tests use a fake named as such.
public protocol Hypervisor: Sendable {
    /// A short name for logs, such as the connection URI.
    var name: String { get }
    /// Nil when the hypervisor says there is no such domain; throws when it cannot answer, which is
    /// never the same thing. Its name, UUID and state; not whether it is persistent.
    func lookup(_ target: DomainTarget, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> DomainInfo?
    func listDomains(deadline: ContinuousClock.Instant) async throws(FenceFailure) -> [DomainInfo]
    /// Forces the domain off, and reads its state right after in the same call (nil: it is gone,
    /// as a transient domain goes): the reading that confirms the off costs no second lookup.
    func destroy(uuid: String, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> DomainState?
    /// Starts a defined (persistent) domain.
    func start(uuid: String, deadline: ContinuousClock.Instant) async throws(FenceFailure)
    /// Whether the domain is defined (survives being shut off) rather than transient.
    func isPersistent(uuid: String, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> Bool
    /// The domain's XML, to recreate a transient domain after destroying it.
    func definition(uuid: String, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> String
    /// Creates and starts a transient domain from its XML.
    func startTransient(xml: String, deadline: ContinuousClock.Instant) async throws(FenceFailure)
    /// Succeeds when the hypervisor answers at all.
    func ping(deadline: ContinuousClock.Instant) async throws(FenceFailure)
}
