import FenceCore
import JSONValue

/// The JSON form of each message (schema version 1). Field names are short, stable and documented
/// in Docs/bus.md; a receiver refuses a document that lacks a field it needs.
extension BusMessage {
    var json: JSON {
        switch self {
        case .snapshot(let snapshot):
            return .object([
                ("host", .string(snapshot.host)), ("epoch", .integer(snapshot.epoch)), ("seq", .integer(snapshot.sequence)),
                ("libvirt", .bool(snapshot.libvirtConnected)), ("domains", .array(snapshot.domains.map(Self.domain))),
            ])
        case .delta(let delta):
            var members: [(String, JSON)] = [
                ("host", .string(delta.host)), ("epoch", .integer(delta.epoch)), ("seq", .integer(delta.sequence)), ("event", .string(delta.event)),
                ("eventAt", .integer(delta.eventTime)),
            ]
            switch delta.change {
            case .updated(let domain): members.append(("domain", Self.domain(domain)))
            case .removed(let uuid, let name): members.append(("removed", .object([("uuid", .string(uuid)), ("name", .string(name))])))
            case .unreadable(let uuid, let name): members.append(("unreadable", .object([("uuid", .string(uuid)), ("name", .string(name))])))
            }
            return .object(members)
        case .heartbeat(let heartbeat):
            return .object([
                ("host", .string(heartbeat.host)), ("epoch", .integer(heartbeat.epoch)), ("seq", .integer(heartbeat.sequence)),
                ("libvirt", .bool(heartbeat.libvirtConnected)), ("domainCount", .integer(heartbeat.domainCount)),
            ])
        case .command(let command):
            return .object([
                ("id", .string(command.id)), ("host", .string(command.host)), ("action", .string(command.action.rawValue)),
                ("target", .string(command.target)), ("uuid", command.uuid.map(JSON.string) ?? .null),
                ("deadline", .integer(command.deadline)), ("issuer", .string(command.issuer)),
            ] + (command.agentEpoch.map { [("agentEpoch", JSON.integer($0))] } ?? []))
        case .result(let result):
            var outcome: [(String, JSON)]
            switch result.outcome {
            case .success: outcome = [("outcome", .string("success"))]
            case .off: outcome = [("outcome", .string("off"))]
            case .denied: outcome = [("outcome", .string("denied"))]
            case .failed(let code, let message): outcome = [("outcome", .string("failed")), ("code", .string(code)), ("message", .string(message))]
            }
            return .object([("command", .string(result.commandID)), ("host", .string(result.host))] + outcome
                + [("before", result.before.map(Self.domain) ?? .null), ("observed", result.observed.map(Self.domain) ?? .null)])
        case .hostState(let change):
            return .object([("host", .string(change.host)), ("change", .string(change.change.rawValue)), ("operator", .string(change.operatorName))])
        case .snapshotRequest(let request):
            return .object([("router", .string(request.router))])
        }
    }

    public init(kind: String, json: JSON) throws(BusError) {
        func field(_ name: String) throws(BusError) -> JSON {
            guard let value = json[name] else { throw BusError(.malformed, "\(kind): no field \"\(name)\"") }
            return value
        }
        func string(_ name: String) throws(BusError) -> String {
            guard let value = try field(name).stringValue else { throw BusError(.malformed, "\(kind): \"\(name)\" is not a string") }
            return value
        }
        func unsigned(_ name: String) throws(BusError) -> UInt64 {
            guard let value = try field(name).uint64Value else { throw BusError(.malformed, "\(kind): \"\(name)\" is not a whole number") }
            return value
        }
        func boolean(_ name: String) throws(BusError) -> Bool {
            guard let value = try field(name).boolValue else { throw BusError(.malformed, "\(kind): \"\(name)\" is not true or false") }
            return value
        }
        switch kind {
        case "snapshot":
            guard let domains = try field("domains").arrayValue else { throw BusError(.malformed, "snapshot: \"domains\" is not a list") }
            var parsed: [DomainInfo] = []
            parsed.reserveCapacity(domains.count)
            for domain in domains { parsed.append(try Self.domain(domain)) }
            self = .snapshot(InventorySnapshot(
                host: try string("host"), epoch: try unsigned("epoch"), sequence: try unsigned("seq"),
                libvirtConnected: try boolean("libvirt"), domains: parsed
            ))
        case "delta":
            let change: InventoryDelta.Change
            if let domain = json["domain"] {
                change = .updated(try Self.domain(domain))
            } else if let removed = json["removed"], let uuid = removed["uuid"]?.stringValue, let name = removed["name"]?.stringValue {
                change = .removed(uuid: uuid, name: name)
            } else if let unreadable = json["unreadable"], let uuid = unreadable["uuid"]?.stringValue, let name = unreadable["name"]?.stringValue {
                change = .unreadable(uuid: uuid, name: name)
            } else {
                throw BusError(.malformed, "delta: none of \"domain\", \"removed\" and \"unreadable\"")
            }
            self = .delta(InventoryDelta(host: try string("host"), epoch: try unsigned("epoch"), sequence: try unsigned("seq"), change: change, event: try string("event"), eventTime: try unsigned("eventAt")))
        case "heartbeat":
            self = .heartbeat(Heartbeat(
                host: try string("host"), epoch: try unsigned("epoch"), sequence: try unsigned("seq"),
                libvirtConnected: try boolean("libvirt"), domainCount: Int(clamping: try unsigned("domainCount"))
            ))
        case "command":
            let actionName = try string("action")
            guard let action = FenceAction(rawValue: actionName) else { throw BusError(.malformed, "command: unknown action \"\(actionName)\"") }
            let uuid = try field("uuid")
            guard uuid == .null || uuid.stringValue != nil else { throw BusError(.malformed, "command: \"uuid\" is neither null nor a string") }
            self = .command(FenceCommand(
                id: try string("id"), host: try string("host"), action: action, target: try string("target"),
                uuid: uuid.stringValue, deadline: try unsigned("deadline"), issuer: try string("issuer"),
                agentEpoch: json["agentEpoch"] == nil ? nil : try unsigned("agentEpoch")
            ))
        case "result":
            let outcome: CommandResult.Outcome
            switch try string("outcome") {
            case "success": outcome = .success
            case "off": outcome = .off
            case "denied": outcome = .denied
            case "failed": outcome = .failed(code: try string("code"), message: try string("message"))
            case let other: throw BusError(.malformed, "result: unknown outcome \"\(other)\"")
            }
            let before = try field("before")
            let observed = try field("observed")
            self = .result(CommandResult(
                commandID: try string("command"), host: try string("host"), outcome: outcome,
                before: before == .null ? nil : try Self.domain(before),
                observed: observed == .null ? nil : try Self.domain(observed)
            ))
        case "snapshot-request":
            self = .snapshotRequest(SnapshotRequest(router: try string("router")))
        case "host-state":
            let name = try string("change")
            guard let change = HostStateChange.Change(rawValue: name) else { throw BusError(.malformed, "host-state: unknown change \"\(name)\"") }
            self = .hostState(HostStateChange(host: try string("host"), change: change, operatorName: try string("operator")))
        default:
            throw BusError(.unknownType, "unknown message type \"\(kind)\"")
        }
    }

    /// `persistent` only when it was read (a command's readings do not read it).
    private static func domain(_ domain: DomainInfo) -> JSON {
        var members: [(String, JSON)] = [("name", .string(domain.name)), ("uuid", .string(domain.uuid)), ("state", .integer(domain.state.rawValue))]
        if let persistent = domain.persistent { members.append(("persistent", .bool(persistent))) }
        return .object(members)
    }

    private static func domain(_ json: JSON) throws(BusError) -> DomainInfo {
        guard let name = json["name"]?.stringValue, let uuid = json["uuid"]?.stringValue,
              let stateNumber = json["state"]?.uint64Value, let state = DomainState(rawValue: UInt8(clamping: stateNumber)) else {
            throw BusError(.malformed, "a domain lacks name, uuid or state")
        }
        let persistent = json["persistent"]
        guard persistent == nil || persistent?.boolValue != nil else { throw BusError(.malformed, "a domain's persistent is not true or false") }
        return DomainInfo(name: name, uuid: uuid, state: state, persistent: persistent?.boolValue)
    }
}
