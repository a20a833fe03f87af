import Cryptography
import FenceBus
import FenceConfig
import FenceWire
import JSONValue

/// What each fuzz target feeds its input to. Every target also checks invariants of its own and
/// traps when one breaks, so that libFuzzer reports it as a crash.
enum FuzzTarget: String, CaseIterable, Sendable {
    /// A datagram: decoding, verification, the call-back address, the seen-packets fingerprint
    /// and the request history.
    case packet
    /// The daemon's side of a call-back or stream conversation, fed in chunks.
    case conversation
    /// fence_virt.conf: the grammar, the settings of both daemons, rendering back.
    case config
    /// A bus message: the MAC check, then (with a valid MAC) the JSON, the schema and the sender's
    /// proof (pair MAC or signature).
    case bus

    static let key = FenceKey(fileContents: Array("fence-router fuzzing key".utf8))
    static let busKeyBytes = [UInt8](repeating: 0x42, count: 64)
    static let busKey = try! BusKey(fileContents: busKeyBytes)
    /// One identity key that the fuzz trust accepts for every name, sender and receiver: the
    /// harness proves what it means to get past the sender check, as it computes the MAC.
    static let signer = SigningKey()

    struct EveryName: BusTrust {
        let key: VerifyingKey
        func verifyingKey(role: BusRole, name: String) -> VerifyingKey? { key }
        func names(role: BusRole) -> [String] { [] }
    }

    func run(_ data: [UInt8]) {
        switch self {
        case .packet: Self.packet(data)
        case .conversation: Self.conversation(data)
        case .config: Self.config(data)
        case .bus: Self.bus(data)
        }
    }

    private static func packet(_ data: [UInt8]) {
        guard var request = try? FenceRequest(decoding: data) else { return }
        let verifier = RequestVerifier(key: key, minimumHash: .none)
        _ = try? verifier.verify(request)
        // Signed with the key, any decodable packet must verify: the signature covers what was decoded.
        if request.hash != .none {
            request.sign(key: key, random: Array(data.prefix(6)) + Array(repeating: 0, count: max(0, 6 - data.count)))
            guard (try? verifier.verify(request)) != nil else { fatalError("a packet we signed does not verify") }
            guard SeenPackets.Fingerprint(request) != nil else { fatalError("a signed packet has no fingerprint") }
        }
        let now = ContinuousClock.now
        var history = RequestHistory()
        let candidate = request.callbackAddress.map { CallbackCandidate(address: $0, port: request.port, matchesSource: $0.isUsableForCallback) }
        _ = candidate?.address.description
        let key = RequestKey(request)
        _ = history.admit(key, candidate: candidate, source: "fuzz", now: now)
        if case .candidates(let list) = history.beginCallback(key, now: now), list.isEmpty != (candidate == nil) {
            fatalError("the history lost or invented a call-back candidate")
        }
    }

    private static func conversation(_ data: [UInt8]) {
        guard let first = data.first else { return }
        let auth: HashAlgorithm = [.none, .sha1, .sha256, .sha512][Int(first & 3)]
        let exchange = ChallengeResponse(key: key, algorithm: auth)
        var conversation = Conversation(
            kind: first & 4 == 0 ? .callback : .stream, exchange: exchange, tag: ChallengeTag(key: key),
            random: Array(repeating: first, count: ChallengeTag.randomLength)
        )
        let answerHonestly = first & 8 != 0
        var events = conversation.start()
        var rest = data.dropFirst()
        var sends = 0, requests = 0, authentications = 0
        while true {
            for event in events {
                switch event {
                case .send(let bytes):
                    sends += 1
                    guard bytes.count == 128, sends == 1 else { fatalError("sent \(bytes.count) bytes, send number \(sends)") }
                    if answerHonestly { events = conversation.receive(exchange.response(to: Array(bytes.suffix(64)))) }
                case .request(let bytes):
                    requests += 1
                    guard bytes.count == FenceRequest.length, requests == 1 else { fatalError("request of \(bytes.count) bytes, number \(requests)") }
                    events = conversation.requestAccepted()
                case .authenticated:
                    authentications += 1
                    guard authentications == 1, auth == .none || sends == 1 else { fatalError("authenticated without the exchange") }
                case .refused:
                    guard conversation.isRefused else { fatalError("refused but not in the refused state") }
                }
            }
            guard let length = rest.first else { return }
            let chunk = rest.dropFirst().prefix(Int(length))
            rest = rest.dropFirst(1 + chunk.count)
            let wasRefused = conversation.isRefused
            events = conversation.receive(chunk)
            if wasRefused, !events.isEmpty { fatalError("a refused conversation went on") }
        }
    }

    private static func config(_ data: [UInt8]) {
        guard let document = try? ConfigDocument(parsing: String(decoding: data, as: UTF8.self), file: "fuzz.conf") else { return }
        _ = try? RouterConfiguration(document: document)
        _ = try? HostAgentConfiguration(document: document)
        // What was parsed renders back into a file that parses.
        let rendered = document.rendered()
        guard (try? ConfigDocument(parsing: rendered, file: "rendered.conf")) != nil else { fatalError("rendered file does not parse:\n\(rendered)") }
    }

    private static func bus(_ data: [UInt8]) {
        guard let first = data.first else { return }
        let body = Array(data.dropFirst())
        let codec = BusCodec(key: busKey, trust: EveryName(key: signer.verifyingKey))
        let mac = first & 1 == 0
            ? hex(Digest.hmac(.sha256, key: busKeyBytes, message: body))
            : String(decoding: body.prefix(Int(first >> 2)), as: UTF8.self)
        let garbage = String(decoding: body.suffix(Int(first >> 2)), as: UTF8.self)
        var sealed = SealedBusMessage(body: body, mac: mac, proof: .signature([]))
        var properties = sealed.properties.merging([SealedBusMessage.signatureProperty: garbage, SealedBusMessage.pairMACsProperty: garbage]) { $1 }
        var receiver = BusIdentity(role: .router, name: "fuzz-router", key: signer)
        // Proving costs more than the rest of the target: only for inputs with a valid MAC that parse.
        if first & 3 == 0, let json = try? JSON(parsing: body), let kind = json["type"]?.stringValue, let from = json["from"]?.stringValue,
           let payload = json["body"], let message = try? BusMessage(kind: kind, json: payload) {
            receiver = BusIdentity(role: message.receiverRole, name: "fuzz-\(message.receiverRole.rawValue)", key: signer)
            if let proof = try? codec.proof(of: body, message, as: BusIdentity(role: message.signerRole, name: from, key: signer), for: [receiver.name]) {
                sealed = SealedBusMessage(body: body, mac: mac, proof: proof)
                properties = sealed.properties
            }
        }
        if let envelope = try? codec.open(body: body, properties: properties, as: receiver) {
            // What was accepted seals back into a message that opens to the same envelope.
            let identity = BusIdentity(role: envelope.message.signerRole, name: envelope.sender, key: signer)
            guard let again = try? codec.seal(envelope.message, id: envelope.id, as: identity, for: [receiver.name], now: envelope.sentAt),
                  (try? codec.open(body: again.body, properties: again.properties, as: receiver)) == envelope else {
                fatalError("an accepted message does not survive sealing")
            }
            var guardian = FenceBus.ReplayGuard()
            _ = try? guardian.admit(envelope, now: envelope.sentAt)
        }
        if let json = try? JSON(parsing: body), (try? JSON(parsing: json.encoded())) != json {
            fatalError("JSON does not survive encoding")
        }
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xF)]] }, as: UTF8.self)
    }
}
