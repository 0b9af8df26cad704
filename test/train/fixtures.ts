import { Table, Utf8, List, Field, vectorFromArray } from 'apache-arrow';
import { writeParquet } from '../../artifacts/parquet.ts';

/**
 * 64 (question, passage) pairs, half Japanese and half English, written for these tests: short,
 * on distinct topics, so in-batch negatives are real negatives and a few steps move the loss.
 */
const FACTS: Array<[string, string]> = [
  ['富士山の高さは?', '富士山は標高3776メートルで、日本で最も高い山である。'],
  ['琵琶湖はどこにある?', '琵琶湖は滋賀県にある日本最大の湖である。'],
  ['日本の首都はどこ?', '東京は日本の首都で、約1400万人が暮らしている。'],
  ['新幹線が開業したのはいつ?', '東海道新幹線は1964年、東京オリンピックの直前に開業した。'],
  ['味噌汁の主な材料は?', '味噌汁は出汁に味噌を溶かし、豆腐やわかめを入れて作る。'],
  ['桜が咲くのは何月ごろ?', '東京の桜はふつう三月下旬から四月上旬に満開になる。'],
  ['将棋の駒はいくつある?', '将棋は一人二十枚、合わせて四十枚の駒を使う。'],
  ['日本で一番長い川は?', '信濃川は全長367キロメートルで、日本で最も長い川である。'],
  ['茶道で使う粉末の茶は?', '茶道では抹茶という粉末状の緑茶を茶筅で点てる。'],
  ['北海道の冬の祭りは?', 'さっぽろ雪まつりは毎年二月に大通公園で開かれる。'],
  ['俳句の音の数は?', '俳句は五・七・五の十七音からなる短い詩である。'],
  ['沖縄の伝統的な楽器は?', '三線は蛇の皮を張った沖縄の三本弦の楽器である。'],
  ['日本の国花は?', '日本には法律上の国花はないが、桜と菊が広く親しまれている。'],
  ['大阪城を建てたのは誰?', '大阪城は豊臣秀吉が十六世紀の終わりに築いた城である。'],
  ['寿司の酢飯に使うものは?', '寿司飯は炊いた米に酢と砂糖と塩を合わせて作る。'],
  ['日本の祝日で五月五日は?', '五月五日はこどもの日で、鯉のぼりを飾る習慣がある。'],
  ['温泉が多い県は?', '大分県は源泉の数と湧出量がともに日本一の温泉県である。'],
  ['漢字はどこから伝わった?', '漢字は古代中国で生まれ、五世紀ごろまでに日本に伝わった。'],
  ['京都の金閣寺の正式名は?', '金閣寺の正式名称は鹿苑寺で、足利義満が建てた。'],
  ['日本の通貨の単位は?', '日本の通貨は円で、硬貨は一円から五百円まである。'],
  ['相撲の最高位は?', '横綱は大相撲の番付で最も高い地位である。'],
  ['梅雨はいつ始まる?', '本州の梅雨はおおむね六月上旬に始まり七月中旬に明ける。'],
  ['折り紙で有名な鳥は?', '折り鶴は一枚の正方形の紙から折る鶴の形の折り紙である。'],
  ['日本最古の歌集は?', '万葉集は七世紀から八世紀の歌を集めた日本最古の歌集である。'],
  ['How tall is Mount Everest?', 'Mount Everest rises 8,849 metres above sea level, the highest peak on Earth.'],
  ['What do bees make?', 'Honey bees collect nectar from flowers and turn it into honey inside the hive.'],
  ['Who wrote Hamlet?', 'Hamlet is a tragedy written by William Shakespeare around the year 1600.'],
  ['What is the boiling point of water?', 'At sea level, pure water boils at 100 degrees Celsius.'],
  ['How many legs does a spider have?', 'Spiders are arachnids and have eight legs, unlike insects with six.'],
  ['What is the largest ocean?', 'The Pacific Ocean covers about a third of the surface of the Earth.'],
  ['Which planet is called the red planet?', 'Mars looks red because its surface is rich in iron oxide dust.'],
  ['What gas do plants absorb?', 'Plants take in carbon dioxide and release oxygen during photosynthesis.'],
  ['How long is a marathon?', 'A marathon race is 42.195 kilometres long.'],
  ['What is the speed of light?', 'Light travels through a vacuum at roughly 300,000 kilometres per second.'],
  ['Who painted the Mona Lisa?', 'Leonardo da Vinci painted the Mona Lisa in the early sixteenth century.'],
  ['What is the capital of Canada?', 'Ottawa, in the province of Ontario, is the capital city of Canada.'],
  ['How many strings does a violin have?', 'A violin has four strings tuned in fifths: G, D, A and E.'],
  ['What is the hardest natural material?', 'Diamond, a form of carbon, is the hardest naturally occurring material.'],
  ['When did humans first land on the Moon?', 'Apollo 11 landed on the Moon in July 1969.'],
  ['What do pandas eat?', 'Giant pandas feed almost entirely on bamboo shoots and leaves.'],
  ['How many bones are in the adult human body?', 'An adult human skeleton has 206 bones.'],
  ['Which language has the most native speakers?', 'Mandarin Chinese has more native speakers than any other language.'],
  ['What is the chemical symbol for gold?', 'The chemical symbol for gold is Au, from the Latin word aurum.'],
  ['How does a compass work?', 'A compass needle is a small magnet that lines up with the magnetic field of the Earth.'],
  ['What is the longest river in Africa?', 'The Nile flows north for about 6,650 kilometres to the Mediterranean Sea.'],
  ['Why is the sky blue?', 'Air molecules scatter short blue wavelengths of sunlight more than red ones.'],
  ['What is the freezing point of water in Fahrenheit?', 'Water freezes at 32 degrees Fahrenheit.'],
  ['Who discovered penicillin?', 'Alexander Fleming discovered penicillin in 1928 when mould killed his bacteria.'],
  ['What is the smallest prime number?', 'Two is the smallest prime number and the only even one.'],
  ['How many players are on a soccer team?', 'Each football team has eleven players on the field, including the goalkeeper.'],
  ['What is the main ingredient of guacamole?', 'Guacamole is made by mashing ripe avocados with lime, salt and onion.'],
  ['Which animal is the largest mammal?', 'The blue whale can grow longer than 30 metres and is the largest animal ever known.'],
  ['What causes tides?', 'Tides are caused mainly by the gravitational pull of the Moon on the oceans.'],
  ['How many continents are there?', 'Geographers usually count seven continents, from Asia to Antarctica.'],
  ['What is the currency of the United Kingdom?', 'The United Kingdom uses the pound sterling.'],
  ['Who invented the telephone?', 'Alexander Graham Bell was granted the first patent for a telephone in 1876.'],
  ['What is the tallest building in the world?', 'The Burj Khalifa in Dubai stands 828 metres tall.'],
  ['How many hours are in a week?', 'A week has seven days of twenty-four hours, 168 hours in all.'],
  ['What is the largest desert?', 'Antarctica is the largest desert on Earth because it receives so little precipitation.'],
  ['What instrument has 88 keys?', 'A standard modern piano has 88 keys, 52 white and 36 black.'],
  ['What is DNA?', 'DNA is the molecule that carries the genetic instructions of living organisms.'],
  ['How fast can a cheetah run?', 'A cheetah can sprint at about 100 kilometres per hour over short distances.'],
  ['Which metal is liquid at room temperature?', 'Mercury is the only metal that is liquid at room temperature.'],
  ['What is the square root of 144?', 'Twelve multiplied by twelve is 144, so its square root is 12.'],
];

export interface PairRow {
  anchor: string;
  positive: string;
  negatives: string[];
  queryId: string;
  chunkId: string;
  negativeIds: string[];
}

/** The fixture pairs, with `negatives` hard negatives each (the passages of the next facts). */
export function pairRows(negatives = 0, count = FACTS.length): PairRow[] {
  return FACTS.slice(0, count).map(([anchor, positive], i) => {
    const neg = Array.from({ length: negatives }, (_, j) => (i + j + 1) % count);
    return {
      anchor,
      positive,
      negatives: neg.map((k) => FACTS[k]![1]),
      queryId: `q${i}`,
      chunkId: `c${i}`,
      negativeIds: neg.map((k) => `c${k}`),
    };
  });
}

/** Many distinct, long rows: enough to make one batch of the requested size real (for memory tests). */
export function syntheticRows(count: number): PairRow[] {
  return Array.from({ length: count }, (_, i) => ({
    anchor: `question number ${i} about the ${i % 97}th topic of the long synthetic benchmark corpus`,
    positive: `passage ${i}: ` + `this sentence describes item ${i} in some detail and repeats a few words. `.repeat(6),
    negatives: [],
    queryId: `q${i}`,
    chunkId: `c${i}`,
    negativeIds: [],
  }));
}

/** Write rows in the dataset artifact's layout: anchor, positive, negative_1..k, query_id, chunk_id, negative_ids. */
export async function writePairsParquet(path: string, rows: PairRow[]): Promise<void> {
  const k = rows[0]?.negatives.length ?? 0;
  const utf8 = (values: string[]) => vectorFromArray(values, new Utf8());
  const cols: Record<string, ReturnType<typeof utf8>> = {
    anchor: utf8(rows.map((r) => r.anchor)),
    positive: utf8(rows.map((r) => r.positive)),
  };
  for (let j = 0; j < k; j++) cols[`negative_${j + 1}`] = utf8(rows.map((r) => r.negatives[j] ?? ''));
  cols.query_id = utf8(rows.map((r) => r.queryId));
  cols.chunk_id = utf8(rows.map((r) => r.chunkId));
  const negativeIds = vectorFromArray(
    rows.map((r) => r.negativeIds),
    new List(new Field('item', new Utf8(), true)),
  );
  await writeParquet(path, new Table({ ...cols, negative_ids: negativeIds }));
}
