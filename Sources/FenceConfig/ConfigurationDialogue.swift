import FenceWire

/// One question of the configurator: a paragraph that says what the setting is for, the prompt,
/// and the answer an empty line (or the end of the input) keeps.
public struct ConfigurationQuestion: Hashable, Sendable {
    public let explanation: String
    public let prompt: String
    public let defaultAnswer: String
}

/// The questions of `fence_virtd -c`, in its order (so answers piped to it fit ours), then ours
/// for the amqp backend; each answer edits the document in place, keeping whatever it does not ask
/// about (hash, auth, groups, comments aside). Free of I/O: the caller asks and prints.
public struct ConfigurationDialogue {
    public private(set) var document: ConfigDocument

    /// Where Debian's fence_virtd looks for its plugins; we have none, but keep the answer.
    public static let referenceModulePath = "/usr/lib/x86_64-linux-gnu/fence-virt/"

    public init(editing document: ConfigDocument) {
        self.document = document
    }

    /// `ask` returns the line typed, or nil at the end of the input; `tell` prints a remark.
    public mutating func run(ask: (ConfigurationQuestion) -> String?, tell: (String) -> Void) {
        var document = self.document
        func answer(_ prompt: String, _ defaultAnswer: String, _ explanation: String = "", check: (String) -> String? = { _ in nil }) -> String {
            while true {
                guard let line = ask(ConfigurationQuestion(explanation: explanation, prompt: prompt, defaultAnswer: defaultAnswer)) else { return defaultAnswer }
                let text = String(line.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
                if text.isEmpty { return defaultAnswer }
                if let problem = check(text) {
                    tell(problem)
                    continue
                }
                return text
            }
        }
        func setting(_ path: [String], _ key: String, _ prompt: String, _ fallback: String, _ explanation: String = "",
                     check: (String) -> String? = { _ in nil }, noneRemoves: Bool = false) {
            let chosen = answer(prompt, document.value(path, key) ?? fallback, explanation, check: check)
            document.set(path, key, noneRemoves && chosen.lowercased() == "none" ? nil : chosen)
        }
        func askBus() {
            let amqp = ["backends", "amqp"]
            let url = answer("Broker URL", document.value(amqp, "url") ?? "amqp://127.0.0.1:5672",
                             "Every host and router meets on this AMQP 1.0 broker (amqps:// for TLS).",
                             check: { $0.hasPrefix("amqp://") || $0.hasPrefix("amqps://") ? nil : "\"\($0)\" is not an amqp:// or amqps:// URL" })
            document.set(amqp, "url", url)
            setting(amqp, "user", "Broker user", "none", noneRemoves: true)
            setting(amqp, "password_file", "Broker password file", "none", "A file readable by root only that holds the broker password.", noneRemoves: true)
            var certificate = false
            if url.hasPrefix("amqps://") {
                setting(amqp, "tls_ca_file", "TLS CA file", "/etc/fence-router/ca.pem", "The CA that signed the broker's certificate.")
                setting(amqp, "tls_cert_file", "TLS client certificate", "none", "With a client certificate the broker can know this host by it (EXTERNAL).", noneRemoves: true)
                certificate = document.value(amqp, "tls_cert_file") != nil
                if certificate {
                    setting(amqp, "tls_key_file", "TLS client key", "/etc/fence-router/host.key")
                } else {
                    document.set(amqp, "tls_key_file", nil)
                }
            } else {
                for key in ["tls_ca_file", "tls_cert_file", "tls_key_file"] { document.set(amqp, key, nil) }
            }
            // EXTERNAL is the certificate's identity: without one it cannot be the answer, nor the default.
            let previous = document.value(amqp, "sasl_mechanism")?.uppercased()
            let mechanism = answer("SASL mechanism", certificate ? previous ?? "EXTERNAL" : previous == "EXTERNAL" ? "PLAIN" : previous ?? "PLAIN",
                                   check: { mechanism in
                                       guard ["PLAIN", "EXTERNAL", "ANONYMOUS"].contains(mechanism.uppercased()) else {
                                           return "\"\(mechanism)\" is not PLAIN, EXTERNAL or ANONYMOUS"
                                       }
                                       return mechanism.uppercased() == "EXTERNAL" && !certificate ? "EXTERNAL needs a TLS client certificate" : nil
                                   })
            document.set(amqp, "sasl_mechanism", mechanism.uppercased())
            setting(amqp, "bus_key_file", "Bus key file", "/etc/fence-router/bus.key",
                    "Every bus message is signed with this key: the same file on every host and router (fencectl keygen --bytes 64).")
            setting(amqp, "identity_key_file", "Identity key file", "/etc/fence-router/identity.key",
                    "This daemon signs its bus messages with its own key (fencectl keygen --host NAME or --router NAME).")
            setting(amqp, "trust_directory", "Trust directory", "/etc/fence-router/trust",
                    "The public keys of the hosts, routers and operators this daemon believes: hosts/NAME.pub, routers/NAME.pub, operators/NAME.pub.")
            setting(amqp, "expected_hosts", "Expected hosts", "none",
                    "The hosts that must all be live before a domain found nowhere counts as off, comma-separated; 'none' learns them from the bus.", noneRemoves: true)
        }
        let daemon = ["fence_virtd"]

        setting(daemon, "module_path", "Module search path", Self.referenceModulePath,
                "fence-routerd loads no modules; the path stays in the file for fence_virtd.")

        let listeners = answer("Listener module", document.value(daemon, "listener") ?? "multicast",
                               "Listeners receive the guests' requests: multicast (fence_xvm), tcp (fence_virt -T), or both as \"multicast,tcp\".",
                               check: { Self.listenerKinds($0) == nil ? "\"\($0)\" is not multicast, tcp or a list of them" : nil })
        document.set(daemon, "listener", listeners)
        for kind in Self.listenerKinds(listeners) ?? [.multicast] {
            let path = ["listeners", kind.rawValue]
            switch kind {
            case .multicast:
                let group = answer("Multicast IP Address", document.value(path, "address") ?? "225.0.0.12",
                                   "Guests send their requests to this multicast group (IPv4 or IPv6).",
                                   check: { CallbackAddress($0)?.isMulticast == true ? nil : "\"\($0)\" is not a multicast group address" })
                let family = CallbackAddress(group)?.family == .ipv6 ? "ipv6" : "ipv4"
                tell("Using \(family) as family.")
                document.set(path, "address", group)
                document.set(path, "family", family)
                setting(path, "port", "Multicast IP Port", "1229", check: Self.checkPort)
                setting(path, "interface", "Interface", "none",
                        "Requests are served only when they arrive on this interface (typically the guests' bridge); 'none' serves every interface.",
                        noneRemoves: true)
            case .tcp:
                let address = answer("TCP Listen IP Address", document.value(path, "address") ?? "127.0.0.1",
                                     "fence_virt -T connects to this address.",
                                     check: { CallbackAddress($0) == nil ? "\"\($0)\" is not an IPv4 or IPv6 address" : nil })
                document.set(path, "address", address)
                document.set(path, "family", CallbackAddress(address)?.family == .ipv6 ? "ipv6" : "ipv4")
                setting(path, "port", "TCP Listen Port", "1229", check: Self.checkPort)
            }
            setting(path, "key_file", "Key File", ListenerSecurity.defaultKeyFile,
                    "The key the guests sign with; the same bytes must be in every guest's key file.")
        }

        let backend = answer("Backend module", document.value(daemon, "backend") ?? "libvirt",
                             "libvirt fences the domains of this host only; amqp routes each request to the host that runs the domain.",
                             check: { BackendKind(rawValue: $0.lowercased()) == nil ? "\"\($0)\" is not libvirt or amqp" : nil }).lowercased()
        document.set(daemon, "backend", backend)
        let libvirt = ["backends", "libvirt"]
        if backend == BackendKind.libvirt.rawValue {
            setting(libvirt, "uri", "Libvirt URI", "qemu:///system")
        } else {
            askBus()
            let uri = answer("Libvirt URI of this host's fence-hostd", document.value(libvirt, "uri") ?? "qemu:///system",
                             "fence-hostd reads the same file; 'none' if this host runs no domains.")
            if uri.lowercased() == "none" { document.remove(libvirt) } else { document.set(libvirt, "uri", uri) }
        }
        self.document = document
    }

    /// `multicast`, `tcp` or a list of them, as `listener` takes them; nil for anything else.
    private static func listenerKinds(_ text: String) -> [ListenerKind]? {
        let names = text.split(whereSeparator: { $0 == "," || $0 == " " })
        let kinds = names.compactMap { ListenerKind(rawValue: $0.lowercased()) }
        return kinds.count == names.count && !kinds.isEmpty ? kinds : nil
    }

    private static func checkPort(_ text: String) -> String? {
        guard let port = Int(text), (1...65535).contains(port) else { return "\"\(text)\" is not a port number (1…65535)" }
        return nil
    }
}
