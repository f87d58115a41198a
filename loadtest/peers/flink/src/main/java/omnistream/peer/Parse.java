package omnistream.peer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.OffsetDateTime;
import java.util.Iterator;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichFlatMapFunction;
import org.apache.flink.util.Collector;

/**
 * One JSON line in, the keyed commands it implies out. Parses with Jackson's tree model and
 * checks only what the keyed stages need (type, ts, the ids they key by); a line that fails is
 * counted as rejected and dropped. omnistream's decoder validates the whole contract instead.
 */
public class Parse extends RichFlatMapFunction<String, Cmd> {
    static final AtomicLong LINES = new AtomicLong();
    static final AtomicLong REJECTED = new AtomicLong();
    static final AtomicLong FIRST_NANOS = new AtomicLong();

    private transient ObjectMapper json;
    private long lines;
    private long rejected;

    @Override
    public void open(OpenContext ctx) {
        json = new ObjectMapper();
    }

    @Override
    public void flatMap(String line, Collector<Cmd> out) {
        if (lines++ == 0) {
            FIRST_NANOS.compareAndSet(0, System.nanoTime());
        }
        try {
            parse(json.readTree(line), out);
        } catch (Exception e) {
            rejected++;
        }
    }

    @Override
    public void close() {
        LINES.addAndGet(lines);
        REJECTED.addAndGet(rejected);
    }

    /** The member's key: its member_id if it has one, else its first identity (kind:value). */
    static String memberKey(JsonNode member) {
        if (member == null || !member.isObject() || member.isEmpty()) {
            return null;
        }
        JsonNode id = member.get("member_id");
        if (id != null) {
            return "m:member_id:" + id.asText();
        }
        Iterator<Map.Entry<String, JsonNode>> it = member.fields();
        Map.Entry<String, JsonNode> first = it.next();
        return "m:" + first.getKey() + ":" + first.getValue().asText();
    }

    static String text(JsonNode n, String field) {
        JsonNode v = n.get(field);
        if (v == null || !v.isTextual()) {
            throw new IllegalArgumentException("missing " + field);
        }
        return v.textValue();
    }

    void parse(JsonNode ev, Collector<Cmd> out) {
        String type = text(ev, "type");
        text(ev, "id");
        long ts = OffsetDateTime.parse(text(ev, "ts")).toInstant().toEpochMilli();
        String member = memberKey(ev.get("member"));
        if (member != null) {
            Cmd t = Cmd.of(Cmd.MEMBER_TOUCH, member, ts);
            t.a = type;
            out.collect(t);
        }
        switch (type) {
            case "scan": {
                if (member == null) {
                    throw new IllegalArgumentException("scan without member");
                }
                Cmd c = Cmd.of(Cmd.CODE_SCAN, "c:" + text(ev, "code"), ts);
                c.a = member;
                out.collect(c);
                break;
            }
            case "order": {
                String channel = ev.path("channel").asText("");
                Cmd c = Cmd.of(Cmd.ORDER, "o:" + channel + "/" + text(ev, "order"), ts);
                c.a = text(ev, "status");
                c.c = member;
                JsonNode loc = ev.get("location");
                c.b = loc == null ? null : loc.asText();
                JsonNode lines = ev.get("lines");
                if (lines != null && lines.isArray()) {
                    int k = lines.size();
                    c.skus = new String[k];
                    c.qtys = new long[k];
                    c.prices = new long[k];
                    for (int i = 0; i < k; i++) {
                        JsonNode l = lines.get(i);
                        c.skus[i] = text(l, "sku");
                        c.qtys[i] = l.path("qty").asLong();
                        c.prices[i] = l.path("unit_price").asLong();
                    }
                }
                out.collect(c);
                break;
            }
            case "stock": {
                Cmd c = Cmd.of(Cmd.STOCK, "s:" + text(ev, "sku"), ts);
                c.a = text(ev, "op");
                c.b = text(ev, "location");
                c.n = ev.path("qty").asLong();
                c.n2 = ev.path("safety").asLong(-1);
                out.collect(c);
                break;
            }
            default:
                // click, visit, identify: the member touch above; payment, dealer, code_batch:
                // dealer credit and code batches are not modelled here.
                break;
        }
    }
}
